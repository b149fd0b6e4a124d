// One-time onboarding codes: the code signs the redeeming device's id, so a redemption copied in
// flight is worthless to anyone else.
import { describe, expect, it } from 'vitest';
import { ONBOARDING_ADDRESS, encodeGrant, encodeRedemption, redemptionHash } from '../../src/access/records.ts';
import { toHex } from '../../src/ledger/hash.ts';
import { generateKeyPair, signSchnorr } from '../../src/ledger/signature.ts';
import { createAddress, makeChain, makeMessage, openNode } from '../support/chain.ts';

describe('onboarding codes', () => {
  it('a copied redemption body does not let another key join, and the rightful device still can', async () => {
    const chain = makeChain('onboarding');
    const node = await openNode(chain);
    await createAddress(node, chain, '/plant');
    const code = generateKeyPair(chain.rng);
    const codeId = toHex(code.publicKey);
    await node.submit(makeMessage(chain, chain.admin, { address: ONBOARDING_ADDRESS, key: codeId, body: encodeGrant({ name: 'sensor', pub: ['/plant'], sub: ['/plant'], expiresAtMs: 0 }) }));

    const device = generateKeyPair(chain.rng);
    const attacker = generateKeyPair(chain.rng);
    const body = encodeRedemption(signSchnorr(redemptionHash(chain.genesis.chain, device.publicKey), code.secretKey, chain.rng.bytes(32)));
    const before = toHex(node.cache.digest());
    // The attacker saw the device's message and sends the same body under its own key, first.
    await expect(node.submit(makeMessage(chain, attacker, { address: ONBOARDING_ADDRESS, key: codeId, body }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' });
    // A code signature for another chain is refused too.
    const otherChain = encodeRedemption(signSchnorr(redemptionHash('elsewhere', device.publicKey), code.secretKey, chain.rng.bytes(32)));
    await expect(node.submit(makeMessage(chain, device, { address: ONBOARDING_ADDRESS, key: codeId, body: otherChain }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_BAD_ONBOARDING_CODE' });
    expect(toHex(node.cache.digest())).toBe(before);

    await node.submit(makeMessage(chain, device, { address: ONBOARDING_ADDRESS, key: codeId, body }));
    await node.submit(makeMessage(chain, device, { address: '/plant', key: 'k', body: 'joined' }));
    await expect(node.submit(makeMessage(chain, attacker, { address: '/plant', key: 'k', body: 'x' }))).rejects.toMatchObject({ code: 'KALIMA_ERR_ACCESS_UNKNOWN_DEVICE' });
    await node.close();
  });
});
