"""Throw-away TLS material for the loopback GCS proxy.

A test certificate authority is generated per emulator start, and a leaf certificate for the Google Cloud Storage
host names is signed with it. TensorFlow's libcurl trusts the CA through ``CURL_CA_BUNDLE``; nothing is installed
into a system trust store.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=2)
_CLOCK_SKEW = datetime.timedelta(hours=1)


@dataclasses.dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files written by :func:`write_test_tls_files`.

    Attributes:
        ca_cert: The test CA certificate (point ``CURL_CA_BUNDLE`` here).
        leaf_cert: The server certificate chain (leaf, then CA) for the proxy.
        leaf_key: The server private key (unencrypted) for the proxy.
    """

    ca_cert: Path
    leaf_cert: Path
    leaf_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tfpipe tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("tfpipe test CA")
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    host_names: tuple[str, ...], ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(host) for host in host_names]
    alt_names.append(x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")))
    cert = (
        _builder(_name(host_names[0]), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_test_tls_files(directory: Path, host_names: tuple[str, ...]) -> TlsFiles:
    """Generates a test CA and a leaf certificate for ``host_names`` and writes them as PEM files.

    Args:
        directory: An existing directory to write ``test-ca.pem``, ``leaf.pem`` and ``leaf-key.pem`` into.
        host_names: DNS names the leaf certificate is valid for; the first is also its common name.

    Returns:
        The paths of the files written.

    Raises:
        ValueError: If ``host_names`` is empty.
    """
    if not host_names:
        raise ValueError(f"host_names must name at least one host, got {host_names!r}")
    ca_key, ca_cert = _make_ca()
    leaf_key, leaf_cert = _make_leaf(host_names, ca_key, ca_cert)
    files = TlsFiles(
        ca_cert=directory / "test-ca.pem",
        leaf_cert=directory / "leaf.pem",
        leaf_key=directory / "leaf-key.pem",
    )
    files.ca_cert.write_bytes(_pem(ca_cert))
    files.leaf_cert.write_bytes(_pem(leaf_cert) + _pem(ca_cert))
    files.leaf_key.write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.leaf_key.chmod(0o600)
    return files
