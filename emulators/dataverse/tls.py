"""A local certificate authority and a server certificate for the emulator's HTTPS listener.

msal only accepts an ``https`` authority and Microsoft's Python SDK only an ``https`` base URL, so the
emulator must serve TLS. We generate a private CA (kept in ``directory``) and a server certificate for
``localhost``/``127.0.0.1`` signed by it; clients trust the CA with ``verify=<ca_cert>``. Files are reused
across runs while they are valid (not expiring soon, cover the requested host names, signed by the CA),
so a CA imported once into a browser or a trust store keeps working.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT_NAME = "ca.pem"
CA_KEY_NAME = "ca-key.pem"
CERT_NAME = "server.pem"
KEY_NAME = "server-key.pem"
DEFAULT_HOSTNAMES = ["localhost", "127.0.0.1"]

_CA_DAYS = 3650
_CERT_DAYS = 825  # the longest lifetime common TLS clients accept for a leaf certificate
_RENEW_BEFORE = dt.timedelta(days=7)


class TlsSetupError(RuntimeError):
    """The TLS directory cannot be used (not writable, or unreadable files that cannot be replaced)."""


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path  # PEM of the local CA: pass it as `verify=` to httpx / requests / msal
    cert: Path  # server certificate (PEM) signed by the CA
    key: Path  # server private key (PEM, unencrypted: a local test key)


def generate_ca_and_cert(directory: Path, hostnames: list[str] | None = None) -> TlsFiles:
    """Return CA + server certificate files in `directory`, creating or renewing them when needed.

    `hostnames` may mix DNS names and IP addresses; the server certificate covers all of them.
    A file lock serialises concurrent test processes that share the directory.
    """
    names = list(hostnames or DEFAULT_HOSTNAMES)
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock_path = directory / ".lock"
        with open(lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return _ensure_files(directory, names)
    except OSError as exc:
        raise TlsSetupError(
            f"cannot prepare the emulator's TLS files in {directory}: {exc}. "
            "Pass a writable tls_dir (e.g. a temporary directory)."
        ) from exc


def _ensure_files(directory: Path, names: list[str]) -> TlsFiles:
    files = TlsFiles(
        ca_cert=directory / CA_CERT_NAME,
        cert=directory / CERT_NAME,
        key=directory / KEY_NAME,
    )
    ca_key_path = directory / CA_KEY_NAME
    now = dt.datetime.now(dt.UTC)
    ca = _load_valid_ca(files.ca_cert, ca_key_path, now)
    if ca is None:
        ca = _new_ca(now)
        _write_atomic(ca_key_path, _key_pem(ca[1]), private=True)
        _write_atomic(files.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM))
    elif _server_cert_valid(files, ca[0], names, now):
        return files
    cert, key = _new_server_cert(ca[0], ca[1], names, now)
    _write_atomic(files.key, _key_pem(key), private=True)
    _write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM))
    return files


def _load_valid_ca(
    cert_path: Path, key_path: Path, now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError:
        return None  # unreadable/corrupt files: regenerate rather than fail
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        return None
    if cert.not_valid_after_utc - _RENEW_BEFORE < now:
        return None
    return cert, key


def _server_cert_valid(files: TlsFiles, ca: x509.Certificate, names: list[str], now: dt.datetime) -> bool:
    if not (files.cert.is_file() and files.key.is_file()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        return False
    if cert.not_valid_after_utc - _RENEW_BEFORE < now:
        return False
    covered = {str(v) for v in san.get_values_for_type(x509.DNSName)}
    covered |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    return all(name in covered for name in names)


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "close2d365 emulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "close2d365 local emulator CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
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
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str], now: dt.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_atomic(path: Path, data: bytes, private: bool = False) -> None:
    # write-then-rename so a reader never sees a half-written PEM
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
