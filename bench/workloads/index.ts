/** Every workload, in the order the bench runs them (--only selects by name or group). */
import type { Workload } from '../workload.js';
import { aggregateWorkloads } from './aggregate.js';
import { largeWorkloads } from './large.js';
import { memoryWorkloads } from './memory.js';
import { sessionWorkloads } from './sessions.js';
import { smallCurlWorkloads } from './small-curl.js';
import { smallLftpWorkloads } from './small-lftp.js';
import { smallSftpWorkloads } from './small-sftp.js';
import { storeWorkloads } from './store.js';

export const allWorkloads: Workload[] = [
  ...smallCurlWorkloads,
  ...smallLftpWorkloads,
  ...smallSftpWorkloads,
  ...largeWorkloads,
  ...aggregateWorkloads,
  ...memoryWorkloads,
  ...sessionWorkloads,
  ...storeWorkloads,
];
