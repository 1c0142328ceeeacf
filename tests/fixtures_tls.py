"""TLS and SuperNode authentication for a loopback deployment, as a lab would run it.

``make_certs`` writes a CA and a server certificate for ``127.0.0.1``/``localhost`` signed by
it (the ``cryptography`` package, which flwr itself depends on); ``make_node_key`` writes a
SuperNode's P-384 key pair in OpenSSH form, the only form flwr 1.42 reads
(``flower-supernode --auth-supernode-private-key`` loads the private key,
``flwr supernode register`` the ``.pub``). ``superlink_tls_args`` and ``supernode_tls_args`` are
the flags each process takes; ``register_supernode`` registers a public key through the
SuperLink's Control API (the SuperLink runs with ``--enable-supernode-auth``, so only
registered keys may connect); ``write_flwr_config`` points ``flwr`` at the SuperLink over TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs", "make_node_key", "superlink_tls_args", "supernode_tls_args",
           "register_supernode", "write_flwr_config"]


@dataclass(frozen=True)
class Certs:
    """Paths of the CA certificate and the SuperLink's certificate and key (PEM)."""

    ca: Path
    server_cert: Path
    server_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_certs(folder: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Certs:
    """A CA valid for a day and a server certificate for ``hosts`` (IPs or DNS names)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coopflower test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    certs = Certs(folder / "ca.crt", folder / "server.pem", folder / "server.key")
    certs.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certs.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.server_key.write_bytes(_pem_key(key))
    certs.server_key.chmod(0o600)
    return certs


def make_node_key(path: Path) -> Path:
    """A SuperNode's P-384 key at ``path`` (OpenSSH private key) and ``path.pub``; returns
    the public key's path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    pub = path.with_name(path.name + ".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH))
    return pub


def superlink_tls_args(certs: Certs, auth: bool = True) -> list[str]:
    """``flower-superlink`` flags: HTTPS with ``certs``, and (``auth``) registered nodes only."""
    args = ["--ssl-ca-certfile", str(certs.ca), "--ssl-certfile", str(certs.server_cert),
            "--ssl-keyfile", str(certs.server_key)]
    return args + (["--enable-supernode-auth"] if auth else [])


def supernode_tls_args(certs: Certs, node_key: Path | None) -> list[str]:
    """``flower-supernode`` flags: verify the SuperLink by the CA, sign with ``node_key``."""
    args = ["--root-certificates", str(certs.ca)]
    return args + (["--auth-supernode-private-key", str(node_key)] if node_key else [])


def write_flwr_config(flwr_home: Path, address: str, certs: Certs | None,
                      name: str = "deploy") -> None:
    """``$FLWR_HOME/config.toml``: the default SuperLink connection ``name`` at ``address``,
    over TLS verified by ``certs.ca`` (plaintext when ``certs`` is None)."""
    tls = f'root-certificates = "{certs.ca}"\n' if certs else "insecure = true\n"
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{name}"\n\n[superlink.{name}]\n'
        f'address = "{address}"\n{tls}')


def register_supernode(flwr: Path, public_key: Path, env: dict[str, str],
                       name: str = "deploy") -> int:
    """``flwr supernode register``: the node id the SuperLink gave ``public_key``; a
    ``RuntimeError`` with flwr's own message when it refuses."""
    out = subprocess.run([str(flwr), "supernode", "register", str(public_key), name,
                          "--format", "json"], env=env, capture_output=True, text=True,
                         timeout=60)
    try:
        doc = json.loads(out.stdout[out.stdout.index("{"):])
    except ValueError:
        doc = {}
    if out.returncode != 0 or not doc.get("success"):
        raise RuntimeError(f"flwr supernode register {public_key} failed "
                           f"({out.returncode}): {out.stdout[-2000:]}{out.stderr[-2000:]}")
    return int(doc["node-id"])
