"""A test CA (trustme) and the certificate files a mirror serves with `[server] tls_cert/tls_key`.

The certificates are made by the tests: a throwaway CA per module or test, a leaf for the
mirror's address, written the way certificate tools (cert-manager, certbot) do, each file
renamed into place.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

import trustme

from .mirror_process import process_config

# The addresses a mirror certificate is good for, unless a test asks for others.
MIRROR_NAMES = ("127.0.0.1", "localhost")


def install(
    ca: trustme.CA,
    folder: Path,
    *,
    key_from: trustme.LeafCert | None = None,
    names: tuple[str, ...] = MIRROR_NAMES,
) -> bytes:
    """Write a new certificate (with its chain) and key as folder/cert.pem and folder/key.pem,
    each renamed into place; the new certificate's DER bytes."""
    leaf = ca.issue_cert(*names)
    folder.mkdir(parents=True, exist_ok=True)
    key = (key_from or leaf).private_key_pem.bytes()
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    for name, content in (("cert.pem", chain), ("key.pem", key)):
        part = folder / f".{name}.new"
        part.write_bytes(content)
        os.replace(part, folder / name)
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the test CA."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def write_ca(ca: trustme.CA, path: Path) -> Path:
    """The CA certificate as a PEM file (ca.crt in a certs.d folder, `ca = ` in hosts.toml)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(path))
    return path


def tls_config(upstream_url: str, root: Path) -> dict[str, Any]:
    """A process config serving TLS from root/tls/{cert,key}.pem (see install())."""
    config = process_config(upstream_url, root / "data")
    config["server"] = {
        "tls_cert": str(root / "tls" / "cert.pem"),
        "tls_key": str(root / "tls" / "key.pem"),
    }
    return config
