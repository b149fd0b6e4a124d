// A min-heap of TTL deadlines. Items go stale when their entry is overwritten or deleted; they
// are dropped lazily, when they reach the top, and by `retain` when they outnumber the live ones
// (a key rewritten every second with a one-day TTL would otherwise keep 86,400 of them).
export interface ExpiryItem {
  expiresAtMs: number;
  address: string;
  key: string;
  globalSequence: number;
}

export class ExpiryQueue {
  private readonly heap: ExpiryItem[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(item: ExpiryItem): void {
    const heap = this.heap;
    heap.push(item);
    let index = heap.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (heap[parent]!.expiresAtMs <= item.expiresAtMs) break;
      heap[index] = heap[parent]!;
      index = parent;
    }
    heap[index] = item;
  }

  /** Keeps only the items `live` accepts: a filter and a sort, O(n log n). */
  retain(live: (item: ExpiryItem) => boolean): void {
    const kept = this.heap.filter(live);
    this.heap.length = 0;
    kept.sort((a, b) => a.expiresAtMs - b.expiresAtMs); // a sorted array is a valid min-heap
    for (const item of kept) this.heap.push(item);
  }

  peek(): ExpiryItem | undefined {
    return this.heap[0];
  }

  pop(): ExpiryItem | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    let index = 0;
    for (;;) {
      const left = index * 2 + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && heap[right]!.expiresAtMs < heap[left]!.expiresAtMs ? right : left;
      if (heap[child]!.expiresAtMs >= last.expiresAtMs) break;
      heap[index] = heap[child]!;
      index = child;
    }
    heap[index] = last;
    return top;
  }
}
