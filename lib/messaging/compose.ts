/**
 * Runs middleware Koa's way: each gets a `next` that runs the rest once (a
 * second call rejects), in the order given; the last `next` is `inner`. What
 * a middleware throws, or returns rejected, rejects the whole. Shared by a
 * processor's middleware and a producer's.
 */
export function compose<C>(
  list: ReadonlyArray<(ctx: C, next: () => Promise<void>) => unknown>,
  ctx: C,
  inner: () => Promise<void>,
  what: string,
): Promise<void> {
  const at = (i: number): Promise<void> => {
    if (i === list.length) return inner();
    let called = false;
    const next = (): Promise<void> => {
      if (called)
        return Promise.reject(
          new Error(`${what} #${i + 1} (${list[i].name || 'anonymous'}) called next() more than once`),
        );
      called = true;
      return at(i + 1);
    };
    try {
      return Promise.resolve(list[i](ctx, next)).then(() => undefined);
    } catch (err) {
      return Promise.reject(err);
    }
  };
  return at(0);
}
