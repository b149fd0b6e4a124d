// The operations an anchor proof is made of. OpenTimestamps commits a message to a later one with
// three operations only — append bytes, prepend bytes, SHA-256 — so every hash along the proof is
// written in those terms: a BIP-340 tagged hash is a prepend of the 64-byte tag prefix then a
// SHA-256, and Bitcoin's double SHA-256 is two SHA-256 operations.
import { concatBytes, sha256, tagPrefix, taggedHash } from '../src/ledger/hash.ts';

export type ProofOp =
  | { kind: 'append'; data: Uint8Array }
  | { kind: 'prepend'; data: Uint8Array }
  | { kind: 'sha256' };

/**
 * One level of a tagged Merkle path: the current hash is combined with `sibling` (a hash, or the
 * aggregation's leaf count), which sits on `side` of it, under `tag`: taggedHash(tag, sibling ||
 * current) for 'left', (current || sibling) for 'right'.
 */
export interface HashStep {
  tag: string;
  side: 'left' | 'right';
  sibling: Uint8Array;
}

export function applyStep(current: Uint8Array, step: HashStep): Uint8Array {
  return step.side === 'left' ? taggedHash(step.tag, step.sibling, current) : taggedHash(step.tag, current, step.sibling);
}

export function applySteps(start: Uint8Array, steps: readonly HashStep[]): Uint8Array {
  let current = start;
  for (const step of steps) current = applyStep(current, step);
  return current;
}

/** A tagged step as operations: SHA256(prefix || sibling || x) or SHA256(prefix || x || sibling). */
export function stepOps(step: HashStep): ProofOp[] {
  const prefix = tagPrefix(step.tag);
  if (step.side === 'left') return [{ kind: 'prepend', data: concatBytes(prefix, step.sibling) }, { kind: 'sha256' }];
  return [{ kind: 'append', data: step.sibling }, { kind: 'prepend', data: prefix }, { kind: 'sha256' }];
}

export function evaluateOps(start: Uint8Array, ops: readonly ProofOp[]): Uint8Array {
  // The message is kept as its parts until a SHA-256 reads them: an append or a prepend copies nothing.
  let parts: Uint8Array[] = [start];
  for (const op of ops) {
    if (op.kind === 'sha256') parts = [sha256(...parts)];
    else if (op.kind === 'append') parts.push(op.data);
    else parts.unshift(op.data);
  }
  return parts.length === 1 ? parts[0]! : concatBytes(...parts);
}
