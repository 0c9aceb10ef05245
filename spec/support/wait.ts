/** Bounded waits for specs: every wait has a deadline and says, when it fails, what it was waiting for. */

export interface UntilOptions {
  /** How long to wait, in ms. @default 5000 */
  timeout?: number;
  /** What the wait was for; a function is called at the deadline, so it can show the state it saw. */
  message: string | (() => string);
  /** How often to look again, in ms. @default 20 */
  every?: number;
}

/** Thrown by {@link until} and {@link within} when the deadline passes first. */
export class WaitTimeout extends Error {
  override name = 'WaitTimeout';
}

const said = (message: string | (() => string)) => (typeof message === 'function' ? message() : message);

/**
 * Looks at `probe` until it gives a truthy value, and resolves to that value; rejects with
 * {@link WaitTimeout} naming `message` once `timeout` passes. For state with no event to await
 * (a broker's queue depth, exported spans); where there is an event, await it with {@link within}.
 */
export async function until<T>(
  probe: () => T | Promise<T>,
  { timeout = 5000, message, every = 20 }: UntilOptions,
): Promise<Exclude<T, false | 0 | '' | null | undefined>> {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await probe();
    if (v) return v as Exclude<T, false | 0 | '' | null | undefined>;
    if (Date.now() >= end) throw new WaitTimeout(`${said(message)} (not within ${timeout} ms)`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** Awaits `promise`, or rejects with {@link WaitTimeout} naming `message` once `timeout` passes. */
export async function within<T>(
  promise: Promise<T>,
  { timeout = 5000, message }: Omit<UntilOptions, 'every'>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WaitTimeout(`${said(message)} (not within ${timeout} ms)`)), timeout);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}
