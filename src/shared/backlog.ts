/** What produces output, as a reader sees it: held while the reader is behind, let go as it catches up. */
export interface FlowControl {
  pause(): void;
  resume(): void;
}

/**
 * The bytes a producer has handed over that its reader has not taken yet, and
 * the producer's brake: paused once more than `high` wait, resumed once no
 * more than `low` are left (not at once, or a reader a little slower than the
 * producer would pause and resume it at every chunk). Whatever was on its way
 * when the brake went on still arrives: `high` bounds what waits, give or take
 * a producer's window.
 */
export class Backlog {
  private _bytes = 0;
  private _paused = false;
  private _released = false;
  private readonly _ctls: FlowControl[] = [];
  private _waiting: Array<() => void> = [];

  constructor(
    private readonly _high: number,
    private readonly _low: number = _high >> 2,
  ) {}

  /** A producer to hold back (an exec's ExecStreamOptions.flow); paused at once when the reader is behind already. */
  flow(ctl: FlowControl): void {
    this._ctls.push(ctl);
    if (this._paused) ctl.pause();
  }

  /** `n` more bytes wait for the reader. */
  added(n: number): void {
    this._bytes += n;
    if (this._paused || this._released || this._bytes <= this._high) return;
    this._paused = true;
    for (const c of this._ctls) c.pause();
  }

  /** The reader took `n` bytes. */
  taken(n: number): void {
    this.at(this._bytes - n);
  }

  /** Exactly `n` bytes wait now (for a queue that counts them itself, as a ReadableStream's desiredSize does). */
  at(n: number): void {
    const before = this._bytes;
    this._bytes = Math.max(0, n);
    if (this._bytes > before) this.added(0);
    else if (this._paused && this._bytes <= this._low) this._goOn();
  }

  /** Bytes waiting now. */
  get bytes(): number {
    return this._bytes;
  }

  /** Resolves once the reader has caught up (at once when it is not behind): for a producer that pulls. */
  caughtUp(): Promise<void> {
    return this._paused ? new Promise<void>((r) => this._waiting.push(r)) : Promise.resolve();
  }

  /** The reader went (or the stream ended): nothing is held back from now on, so no producer waits for a reader that will never come. */
  release(): void {
    this._released = true;
    if (this._paused) this._goOn();
  }

  private _goOn(): void {
    this._paused = false;
    for (const c of this._ctls) c.resume();
    const w = this._waiting;
    this._waiting = [];
    for (const wake of w) wake();
  }
}
