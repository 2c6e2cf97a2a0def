#!/usr/bin/env python3
"""Check a carehub audit bundle, or a proof, offline: written from docs/audit-log.md alone.

    verify_bundle.py BUNDLE [KNOWN_CHECKPOINT ...]   an export (carehub audit export)
    verify_bundle.py --proof PROOF.json              an inclusion or consistency proof

Exit 0 when it verifies, 1 (printing why) when it does not. Needs `cryptography` (Ed25519).
"""
import base64, hashlib, json, struct, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

sha = lambda *parts: hashlib.sha256(b"".join(parts)).digest()
leaf = lambda data: sha(b"\x00", data)
node = lambda l, r: sha(b"\x01", l, r)
b64 = base64.b64decode

def fail(why):
    print("FAILED: " + why); sys.exit(1)

def checkpoint(note, key):  # -> (origin, size, root); the signed-note format
    body, _, sigs = note.partition("\n\n")
    origin, size, root = body.split("\n")
    kid = sha(origin.encode(), b"\n\x01", key.public_bytes_raw())[:4]
    for line in sigs.splitlines():
        name, blob = line.removeprefix("\u2014 ").split(" ")
        blob = b64(blob)
        if name == origin and blob[:4] == kid:
            try:
                key.verify(blob[4:], (body + "\n").encode())
            except InvalidSignature:
                fail("the checkpoint's signature does not verify")
            return origin, int(size), b64(root)
    fail("the checkpoint has no signature by the public key")

def entry_hash(e):  # the message log's chain hash: length-prefixed fields
    fields = [e["prev_hash"], str(e["seq"]), e["at"], e["system"], e["vendor"], e["direction"],
              e["message_type"], e["content_type"]]
    digest, payload = e.get("payload_sha256"), e["payload"]
    if payload is not None and digest and hashlib.sha256(b64(payload)).hexdigest() != digest:
        return "a payload that does not match its payload hash"
    fields += ["sha256", bytes.fromhex(digest)] if digest else [b64(payload)]  # retention keeps the digest
    for k in ("canonical", "status", "error_code", "error_message", "decision_id", "order_id",
              "client", "provider", "delivery_key"):
        fields += ["0"] if e[k] is None else ["1", e[k]]
    h = hashlib.sha256()
    for f in fields:
        f = f.encode() if isinstance(f, str) else f
        h.update(struct.pack("<Q", len(f)) + f)
    return h.hexdigest()

def inclusion(lf, index, size, proof, root):  # RFC 9162 2.1.3.2
    if index >= size: return False
    fn, sn, r = index, size - 1, lf
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn: fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root

def consistency(m, n, old, new, proof):  # RFC 9162 2.1.4.2
    if m == n: return not proof and old == new
    if m & (m - 1) == 0: proof = [old] + proof
    fn, sn = m - 1, n - 1
    while fn & 1: fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while not fn & 1 and fn: fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old and sr == new

def main(args):
    if args[0] == "--proof":
        p = json.load(open(args[1]))
        key = Ed25519PublicKey.from_public_bytes(b64(p["public_key"]))
        proof = [b64(h) for h in p["proof"]]
        if "seq" in p:
            _, size, root = checkpoint(p["checkpoint"], key)
            ok = inclusion(leaf(bytes.fromhex(p["hash"])), p["seq"] - 1, size, proof, root)
        else:
            _, m, old = checkpoint(p["from_checkpoint"], key)
            _, n, new = checkpoint(p["to_checkpoint"], key)
            ok = consistency(m, n, old, new, proof)
        print("ok" if ok else "FAILED: the proof does not verify"); return 0 if ok else 1
    lines = open(args[0], encoding="utf-8").read().splitlines()
    head = json.loads(lines[0])
    key = Ed25519PublicKey.from_public_bytes(b64(head["public_key"]))
    origin, size, root = checkpoint(head["checkpoint"], key)
    seen = {size: root}
    for note, proof in [(e["checkpoint"], e["consistency"]) for e in head.get("earlier", [])] + \
                       [(open(k).read(), None) for k in args[1:]]:
        _, m, r = checkpoint(note, key)
        if seen.setdefault(m, r) != r: fail(f"the log forked: two checkpoints of size {m}")
        if proof is not None and not consistency(m, size, r, root, [b64(h) for h in proof]):
            fail(f"the log forked: checkpoint {m} is not consistent with {size}")
    prev = None
    for line in filter(None, lines[1:]):
        e = json.loads(line)
        if prev and (e["seq"] != prev[0] + 1 or e["prev_hash"] != prev[1]):
            fail(f"entry {e['seq']}: the chain is broken after entry {prev[0]}")
        if entry_hash(e) != e["hash"]: fail(f"entry {e['seq']}: its content does not match its hash")
        if not inclusion(leaf(bytes.fromhex(e["hash"])), e["seq"] - 1, size,
                         [b64(h) for h in e["proof"]], root):
            fail(f"entry {e['seq']}: its inclusion proof does not verify")
        prev = (e["seq"], e["hash"])
    print(f"ok: {len(lines) - 1} entries against checkpoint {origin} size {size}")
    return 0

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
