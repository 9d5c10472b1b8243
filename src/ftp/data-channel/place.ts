import type { DataPlaceRefusal } from '../../session/data-places.js';

/**
 * How long a session keeps its place after its passive port stopped
 * listening (accepted, timed out, closed), for its next PASV/EPSV to take
 * with no question to the coordinator. With workers that question is a
 * round trip to the primary, and asked per file it cost FTP gets of
 * 4 KiB files about a third of their rate; a client moving files one after
 * another sends its next PASV within milliseconds of the last transfer's
 * end, so a second covers it on a loaded machine, and a place not used
 * again is held that much longer than its port, at most.
 */
export const PLACE_LINGER_MS = 1000;

/** One passive port's use of the session's place: `end` once it stops listening (only the first call counts). */
export interface PlaceUse {
  end(): void;
}

/**
 * A control connection's place among the passive ports of its address and
 * of its user (Coordinator.dataPlace), held from its PASV/EPSV until
 * PLACE_LINGER_MS after that port stopped listening, so that its next
 * PASV/EPSV reuses it. A session holds one place at most, as it holds one
 * passive port: what it holds is counted once, and given back when the
 * linger ends, at `giveBack` (active mode, a logout) or at `end` (the
 * connection's close), a place answered after that included.
 *
 * The linger runs from the port's stop, not from the end of the transfer it
 * carries: what the shares keep for others is the range's ports, which a
 * transfer under way no longer listens on. Held to the transfer's end, 10
 * places of an address (ftp.maxPassivePortsPerIp) would let only 10 of the
 * 20 sessions it may have (limits.maxSessionsPerIp) transfer at once. A
 * transfer longer than the linger costs its next PASV/EPSV one question.
 */
export class PassivePlace {
  private held: (() => void) | null = null;
  /** The port that uses the place: only its end starts the linger (an older port's late end must not). */
  private using: PlaceUse | null = null;
  private linger: NodeJS.Timeout | null = null;
  private ended = false;

  constructor(private readonly claim: (source: string, user: string) => Promise<(() => void) | DataPlaceRefusal>) {}

  /**
   * The place for a new passive port of `user` from `source`: the one held,
   * or one claimed now. Null when the connection ended meanwhile (the place
   * answered is given back at once).
   */
  async take(source: string, user: string): Promise<PlaceUse | DataPlaceRefusal | null> {
    if (!this.held) {
      if (this.ended) return null;
      const answer = await this.claim(source, user);
      if (typeof answer === 'string') return answer;
      if (this.ended) {
        answer();
        return null;
      }
      this.held = answer;
    }
    this.stopLinger();
    const use: PlaceUse = {
      end: () => {
        if (this.using !== use) return;
        this.using = null;
        this.linger = setTimeout(() => this.giveBack(), PLACE_LINGER_MS);
        this.linger.unref();
      },
    };
    this.using = use;
    return use;
  }

  /** The place goes back now: the session takes active mode, or logs out. */
  giveBack(): void {
    this.stopLinger();
    this.using = null;
    this.held?.();
    this.held = null;
  }

  /** The connection has closed: the place goes back, and none is held again. */
  end(): void {
    this.ended = true;
    this.giveBack();
  }

  private stopLinger(): void {
    if (this.linger) clearTimeout(this.linger);
    this.linger = null;
  }
}
