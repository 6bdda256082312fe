/**
 * HTTP/2 flow control (RFC 9113 §5.2, §6.9): the windows of one connection or stream, both directions.
 * The send window is what the peer lets us send (its WINDOW_UPDATEs and SETTINGS_INITIAL_WINDOW_SIZE); the
 * receive window is what we let it send, given back once the handler consumed the bytes, in updates of at
 * least half the window (so a stream of small reads does not become a stream of tiny frames).
 */
import { FLOW_CONTROL_ERROR, Http2Error, MAX_WINDOW, PROTOCOL_ERROR } from './frames.ts';

export class FlowWindow {
  /** Octets we may still send (may go negative after SETTINGS_INITIAL_WINDOW_SIZE shrank, §6.9.2). */
  send: number;
  /** Octets the peer may still send us. */
  receive: number;
  /** The receive window we advertise when full. */
  private readonly target: number;
  /** Octets received and consumed, not yet given back. */
  private consumed = 0;
  /** 0 for the connection's window, else the stream's id (for the scope of errors). */
  private readonly stream: number;

  constructor(stream: number, sendInitial: number, receiveInitial: number) {
    this.stream = stream;
    this.send = sendInitial;
    this.receive = receiveInitial;
    this.target = receiveInitial;
  }

  /** A WINDOW_UPDATE arrived (§6.9.1): 0 is PROTOCOL_ERROR, past 2^31-1 FLOW_CONTROL_ERROR. */
  onWindowUpdate(increment: number): void {
    if (increment === 0) throw new Http2Error(PROTOCOL_ERROR, 'a WINDOW_UPDATE of 0', this.stream);
    if (this.send + increment > MAX_WINDOW) {
      throw new Http2Error(
        FLOW_CONTROL_ERROR,
        `a window past 2^31-1 (${this.send} + ${increment})`,
        this.stream,
      );
    }
    this.send += increment;
  }

  /**
   * SETTINGS_INITIAL_WINDOW_SIZE changed by `delta` (§6.9.2): a stream's send window moves by it; past
   * 2^31-1 is a connection error.
   */
  onInitialWindowChange(delta: number): void {
    if (this.send + delta > MAX_WINDOW) {
      throw new Http2Error(
        FLOW_CONTROL_ERROR,
        `SETTINGS_INITIAL_WINDOW_SIZE takes stream ${this.stream}'s window past 2^31-1`,
      );
    }
    this.send += delta;
  }

  /** DATA of `length` octets (padding included) arrived: more than the window is FLOW_CONTROL_ERROR. */
  onData(length: number): void {
    if (length > this.receive) {
      throw new Http2Error(
        FLOW_CONTROL_ERROR,
        `${length} octets of DATA into a window of ${this.receive}`,
        this.stream,
      );
    }
    this.receive -= length;
  }

  /**
   * The handler consumed `length` octets (padding counts as consumed at once): returns the increment to send
   * in a WINDOW_UPDATE now, or 0 while less than half the window waits to be given back.
   */
  consume(length: number): number {
    this.consumed += length;
    if (this.consumed < this.target / 2) return 0;
    const increment = this.consumed;
    this.consumed = 0;
    this.receive += increment;
    return increment;
  }

  /** We sent `length` octets of DATA. */
  sent(length: number): void {
    this.send -= length;
  }
}
