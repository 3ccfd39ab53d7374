"""authlib.py — helpers for the auth integration tests: JWTs, JWKS and PKCE with the
Python standard library plus the `openssl` command line for signatures.

A test signs a client assertion exactly as an Epic or Oracle Health backend client
would: RS384 (RSASSA-PKCS1-v1_5 with SHA-384) or ES384 (ECDSA P-384, the DER
signature from OpenSSL converted to JOSE's r||s).
"""

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import time
import urllib.parse


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(tok):
    h, p, s = tok.split(".")
    return json.loads(b64u_dec(h)), json.loads(b64u_dec(p)), s


def unsigned(header, claims):
    return b64u(json.dumps(header, separators=(",", ":")).encode()) + "." + \
        b64u(json.dumps(claims, separators=(",", ":")).encode())


class Key:
    """A private key made by the openssl CLI, with its public JWK."""

    def __init__(self, workdir, kind="RSA", kid=None):
        self.kind = kind
        self.kid = kid or secrets.token_hex(8)
        self.path = os.path.join(workdir, "key-%s.pem" % self.kid)
        if kind == "RSA":
            subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                            "-out", self.path], check=True, capture_output=True)
            mod = subprocess.run(["openssl", "rsa", "-in", self.path, "-noout", "-modulus"], check=True,
                                 capture_output=True, text=True).stdout.strip().split("=", 1)[1]
            self.alg = "RS384"
            self.jwk = {"kty": "RSA", "n": b64u(bytes.fromhex(mod)), "e": "AQAB", "kid": self.kid,
                        "alg": "RS384", "use": "sig"}
        else:
            subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
                            "-out", self.path], check=True, capture_output=True)
            text = subprocess.run(["openssl", "pkey", "-in", self.path, "-noout", "-text"], check=True,
                                  capture_output=True, text=True).stdout
            pub = re.search(r"pub:\s*\n((?:\s+[0-9a-f:]+\n)+)", text).group(1)
            raw = bytes.fromhex(re.sub(r"[\s:]", "", pub))
            assert raw[0] == 4 and len(raw) == 97
            self.alg = "ES384"
            self.jwk = {"kty": "EC", "crv": "P-384", "x": b64u(raw[1:49]), "y": b64u(raw[49:]),
                        "kid": self.kid, "alg": "ES384", "use": "sig"}

    def sign(self, data, alg=None):
        alg = alg or self.alg
        md = {"RS384": "-sha384", "ES384": "-sha384", "RS256": "-sha256", "ES256": "-sha256"}[alg]
        sig = subprocess.run(["openssl", "dgst", md, "-sign", self.path], input=data.encode(),
                             check=True, capture_output=True).stdout
        if self.kind == "EC":
            sig = der_to_raw(sig, 48)
        return sig

    def jwt(self, claims, alg=None, header=None):
        h = {"alg": alg or self.alg, "typ": "JWT", "kid": self.kid}
        if header:
            h.update(header)
        data = unsigned(h, claims)
        return data + "." + b64u(self.sign(data, alg))


def der_to_raw(der, n):
    """ECDSA-Sig-Value (SEQUENCE of two INTEGERs) to r||s of n bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7f)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        ln = der[i + 1]
        v = der[i + 2:i + 2 + ln].lstrip(b"\0")
        out += v.rjust(n, b"\0")
        i += 2 + ln
    return out


def assertion(key, client_id, token_url, lifetime=300, jti=None, extra=None, alg=None):
    now = int(time.time())
    c = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + lifetime,
         "iat": now, "jti": jti or secrets.token_hex(16)}
    if extra:
        c.update(extra)
    return key.jwt(c, alg=alg)


def pkce():
    verifier = b64u(secrets.token_bytes(48))
    challenge = b64u(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge


def form(d):
    return urllib.parse.urlencode(d)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
