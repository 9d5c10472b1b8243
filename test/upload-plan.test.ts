import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planUpload, type ExistingNode, type UploadPlan, type UploadRefusal, type UploadRequest, type UploadSetting } from '../src/session/upload-plan.js';

/** Every value each input can take that makes a difference, and one of each kind beside. */
const EXISTING: Record<string, ExistingNode | null> = {
  none: null,
  file: { type: 'file', size: 10, nlink: 1 },
  'empty file': { type: 'file', size: 0, nlink: 1 },
  'linked file': { type: 'file', size: 10, nlink: 2 },
  dir: { type: 'dir', size: 4096, nlink: 2 },
  symlink: { type: 'symlink', size: 7, nlink: 1 },
  fifo: { type: 'other', size: 0, nlink: 1 },
};
const OFFSETS = [undefined, 0, 4, 10, 11, -1];
const BOOLS = [false, true];
const TRUNCATES = [undefined, false, true];

interface Case {
  existing: string;
  node: ExistingNode | null;
  request: UploadRequest;
  setting: UploadSetting;
}

function* everyCase(): Generator<Case> {
  for (const [existing, node] of Object.entries(EXISTING))
    for (const offset of OFFSETS)
      for (const append of BOOLS)
        for (const exclusive of BOOLS)
          for (const mustExist of BOOLS)
            for (const truncate of TRUNCATES)
              for (const atomicUploads of BOOLS)
                for (const blind of BOOLS)
                  for (const scanned of BOOLS) {
                  const request: UploadRequest = {
                    append,
                    exclusive,
                    mustExist,
                    ...(offset === undefined ? {} : { offset }),
                    ...(truncate === undefined ? {} : { truncate }),
                  };
                  yield { existing, node, request, setting: { atomicUploads, blind, scanned } };
                  }
}

/** Where the first byte goes, and whether the file is emptied first, as the client asked. */
const startsAt = (c: Case) => (c.request.append ? (c.request.truncate === true ? 0 : (c.node?.size ?? 0)) : (c.request.offset ?? 0));
const asksToEmpty = (c: Case) => c.request.truncate ?? (startsAt(c) === 0 && !c.request.append);
/** A new name written from the start is a whole new file, truncation asked or not: nothing is there to keep. */
const empties = (c: Case) => asksToEmpty(c) || (c.node === null && startsAt(c) === 0 && !c.request.append);

/**
 * The decision table, first matching row wins: each row one rule of what
 * sluice does with an upload, in the words of the README and SECURITY.md.
 */
/** Whole uploads are staged with uploads.atomic, and scanned ones whatever it says (in place they would be there unscanned). */
const staged = (c: Case): boolean => c.setting.atomicUploads || c.setting.scanned;

const REFUSALS: [string, (c: Case) => boolean, UploadRefusal][] = [
  ['a directory is not written to', (c) => c.node?.type === 'dir', 'is-a-directory'],
  ['nor is anything but a regular file (symlink, FIFO)', (c) => c.node !== null && c.node.type !== 'file', 'not-a-file'],
  ['an exclusive create (SFTP CREAT|EXCL, STOU) finds the name taken', (c) => c.node !== null && c.request.exclusive, 'already-exists'],
  ['an open without CREAT finds nothing', (c) => c.node === null && c.request.mustExist, 'not-found'],
  ['in a drop box, a resume or append tells a size', (c) => c.setting.blind && startsAt(c) !== 0, 'unseen'],
  ['in a drop box, opening without create tells a name exists', (c) => c.setting.blind && c.request.mustExist, 'unseen'],
  ['in a drop box, writing into an existing file tells it exists', (c) => c.setting.blind && c.node !== null && !empties(c), 'unseen'],
  [
    'a hard-linked file is only replaced whole, by an atomic upload',
    (c) => (c.node?.nlink ?? 0) > 1 && !(empties(c) && staged(c)),
    'linked-elsewhere',
  ],
  ['a scanned upload is whole and staged, never written in place', (c) => c.setting.scanned && !empties(c), 'scan-needs-whole'],
  ['no negative offset', (c) => startsAt(c) < 0, 'beyond-end'],
  ['no offset past the end of the file (or of nothing)', (c) => startsAt(c) > (c.node?.size ?? 0), 'beyond-end'],
];

function expected(c: Case): UploadPlan | { refused: UploadRefusal } {
  const refused = REFUSALS.find(([, when]) => when(c));
  if (refused) return { refused: refused[2] };
  const offset = startsAt(c);
  const truncate = empties(c);
  return {
    offset,
    truncate,
    append: c.request.append,
    // Only uploads that replace the whole file go through a staged file.
    atomic: staged(c) && truncate,
    // Writing over bytes that exist needs overwrite; growing a file at its end does not.
    needsOverwrite: c.node !== null && (truncate || (!c.request.append && offset < c.node.size)),
    createsFile: c.node === null,
    // What took the name since the look is replaced only if the client asked for a replacement.
    mayReplace: asksToEmpty(c) && !c.request.exclusive,
  };
}

describe('planUpload', () => {
  it('decides every combination of its inputs as the decision table says', () => {
    let count = 0;
    const seen = new Map<string, number>();
    for (const c of everyCase()) {
      count++;
      const got = planUpload(c.node, c.request, c.setting);
      assert.deepEqual(got, expected(c), `${c.existing} ${JSON.stringify(c.request)} ${JSON.stringify(c.setting)}`);
      const outcome = 'refused' in got ? got.refused : 'planned';
      seen.set(outcome, (seen.get(outcome) ?? 0) + 1);
    }
    assert.equal(count, 7 * 6 * 2 * 2 * 2 * 3 * 2 * 2 * 2);
    // Every row of the table decides some case: none is shadowed by those above it.
    assert.deepEqual(
      [...seen.keys()].sort(),
      ['already-exists', 'beyond-end', 'is-a-directory', 'linked-elsewhere', 'not-a-file', 'not-found', 'planned', 'scan-needs-whole', 'unseen'],
    );
    for (const [rule, when] of REFUSALS) {
      const first = [...everyCase()].some((c) => when(c) && REFUSALS.find(([, w]) => w(c))?.[0] === rule);
      assert.ok(first, `rule never decides: ${rule}`);
    }
  });

  // What real clients send, spelled out.
  const rows: [string, ExistingNode | null, UploadRequest, UploadSetting, UploadPlan | { refused: UploadRefusal }][] = [
    [
      'FTP STOR of a new file, atomic',
      null,
      { append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 0, truncate: true, append: false, atomic: true, needsOverwrite: false, createsFile: true, mayReplace: true },
    ],
    [
      'FTP STOR over a file',
      EXISTING.file ?? null,
      { append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 0, truncate: true, append: false, atomic: true, needsOverwrite: true, createsFile: false, mayReplace: true },
    ],
    [
      'FTP REST 10 + STOR: a resume at the end is an upload, not an overwrite',
      EXISTING.file ?? null,
      { offset: 10, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 10, truncate: false, append: false, atomic: false, needsOverwrite: false, createsFile: false, mayReplace: false },
    ],
    [
      'FTP REST 4 + STOR: writes over bytes 4..9',
      EXISTING.file ?? null,
      { offset: 4, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 4, truncate: false, append: false, atomic: false, needsOverwrite: true, createsFile: false, mayReplace: false },
    ],
    [
      'FTP APPE: starts at the end',
      EXISTING.file ?? null,
      { append: true, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 10, truncate: false, append: true, atomic: false, needsOverwrite: false, createsFile: false, mayReplace: false },
    ],
    [
      'SFTP OPEN WRITE without CREAT or TRUNC: in place from 0',
      EXISTING.file ?? null,
      { offset: 0, truncate: false, append: false, exclusive: false, mustExist: true },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 0, truncate: false, append: false, atomic: false, needsOverwrite: true, createsFile: false, mayReplace: false },
    ],
    [
      // OpenSSH 9's scp (SFTP mode) and sftp's put without -a: nothing to keep, so a whole new file, staged.
      'SFTP OPEN WRITE|CREAT without TRUNC of a new name: atomic, but never over a file that appears meanwhile',
      null,
      { offset: 0, truncate: false, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 0, truncate: true, append: false, atomic: true, needsOverwrite: false, createsFile: true, mayReplace: false },
    ],
    [
      'the same for a scanned user: staged, so scannable',
      null,
      { offset: 0, truncate: false, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: true },
      { offset: 0, truncate: true, append: false, atomic: true, needsOverwrite: false, createsFile: true, mayReplace: false },
    ],
    [
      'SFTP OPEN WRITE|CREAT without TRUNC of an existing file: in place',
      EXISTING.file ?? null,
      { offset: 0, truncate: false, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { offset: 0, truncate: false, append: false, atomic: false, needsOverwrite: true, createsFile: false, mayReplace: false },
    ],
    [
      'the same for a scanned user: refused, bytes written in place would be unscanned',
      EXISTING.file ?? null,
      { offset: 0, truncate: false, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: true },
      { refused: 'scan-needs-whole' },
    ],
    [
      'SFTP OPEN WRITE|APPEND|CREAT|TRUNC over a file: emptied first, so a whole upload from 0, staged',
      EXISTING.file ?? null,
      { offset: 0, truncate: true, append: true, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: true },
      { offset: 0, truncate: true, append: true, atomic: true, needsOverwrite: true, createsFile: false, mayReplace: true },
    ],
    [
      'STOR into a drop box over a name that exists: replaced whole',
      EXISTING.file ?? null,
      { append: false, exclusive: false, mustExist: false },
      { atomicUploads: false, blind: true, scanned: false },
      { offset: 0, truncate: true, append: false, atomic: false, needsOverwrite: true, createsFile: false, mayReplace: true },
    ],
    [
      'APPE in a drop box',
      null,
      { append: true, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: true, scanned: false },
      { offset: 0, truncate: false, append: true, atomic: false, needsOverwrite: false, createsFile: true, mayReplace: false },
    ],
    [
      'APPE in a drop box over a name that exists',
      EXISTING.file ?? null,
      { append: true, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: true, scanned: false },
      { refused: 'unseen' },
    ],
    [
      'REST 4 + STOR on a hard-linked file',
      EXISTING['linked file'] ?? null,
      { offset: 4, append: false, exclusive: false, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { refused: 'linked-elsewhere' },
    ],
    [
      'STOU over a taken name',
      EXISTING.file ?? null,
      { append: false, exclusive: true, mustExist: false },
      { atomicUploads: true, blind: false, scanned: false },
      { refused: 'already-exists' },
    ],
  ];
  for (const [name, node, request, setting, want] of rows) {
    it(name, () => assert.deepEqual(planUpload(node, request, setting), want));
  }
});
