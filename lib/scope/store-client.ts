/**
 * What a run's database client is: the one a delivery's scope carries to its handlers (`currentDelivery().db`) and a
 * store's `transaction()` joins. The stores (lib/stores/) re-export these, and implement them.
 */

/** One row a query gave back. */
export type StoreRow = Record<string, unknown>;

/** What a query resolves to: node-postgres's shape (`rows`, `rowCount`). */
export interface StoreResult<R extends object = StoreRow> {
  rows: R[];
  rowCount: number | null;
}

/**
 * A run's database client: the transaction's connection, with pg's
 * `query(text, values)`. With `PostgresStore` it is the pool's client itself
 * (wrapped so that it refuses queries once its run has ended), so libraries
 * that take a node-postgres client take it too.
 */
export interface StoreClient {
  query<R extends object = StoreRow>(text: string, values?: readonly unknown[]): Promise<StoreResult<R>>;
}
