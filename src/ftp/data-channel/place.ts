import type { DataPlace, DataPlaceRefusal } from '../../session/data-places.js';

/**
 * How long a session keeps its place after its passive port stopped
 * listening (accepted, timed out, closed), for its next PASV/EPSV to take
 * with no question to the coordinator. With workers that question is a
 * round trip to the primary, and asked per file it cost FTP gets of
 * 4 KiB files about a third of their rate; a client moving files one after
 * another sends its next PASV within milliseconds of the last transfer's
 * end, so a second covers it on a loaded machine. Kept, the place counts
 * against no share (PassivePlace).
 */
export const PLACE_LINGER_MS = 1000;

/** One passive port's use of the session's place: `end` once it stops listening (only the first call counts). */
export interface PlaceUse {
  end(): void;
}

/**
 * A control connection's place among the passive ports of its address and
 * of its user (Coordinator.dataPlace), kept from its first PASV/EPSV until
 * PLACE_LINGER_MS after a port of it stopped listening, so that its next
 * PASV/EPSV takes it again without a question. It counts against the shares
 * only while a port of it listens (DataPlace: idle when the port stops, busy
 * when the next listens), as the ports themselves did before: counted while
 * kept, a client moving files back to back held its place all the time, and
 * an address's sessions past ftp.maxPassivePortsPerIp (10; an office behind
 * one address, FileZilla's transfers beside its browsing) got 425 although
 * no port was left listening (found by a review). A session holds one place
 * at most: given back when the linger ends, at `giveBack` (active mode, a
 * logout) or at `end` (the connection's close), a place answered after that
 * included.
 */
export class PassivePlace {
  private held: DataPlace | null = null;
  /** The port that uses the place: only its end starts the linger (an older port's late end must not). */
  private using: PlaceUse | null = null;
  private linger: NodeJS.Timeout | null = null;
  private ended = false;

  constructor(private readonly claim: (source: string, user: string) => Promise<DataPlace | DataPlaceRefusal>) {}

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
        answer.release();
        return null;
      }
      this.held = answer;
    } else this.held.busy();
    this.stopLinger();
    const use: PlaceUse = {
      end: () => {
        if (this.using !== use) return;
        this.using = null;
        this.held?.idle();
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
    this.held?.release();
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
