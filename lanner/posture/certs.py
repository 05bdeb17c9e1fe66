"""Self-signed TLS certificates for developing the admission webhook (``--generate-certs``)."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os


def generate_self_signed(directory: str, names: list[str] | None = None, days: int = 365
                         ) -> tuple[str, str, str]:
    """Writes ``tls.crt`` and ``tls.key`` into ``directory`` for localhost, 127.0.0.1, ::1 and
    ``names`` (DNS names or IP addresses). Returns the two paths and the certificate as base64,
    ready for a webhook configuration's ``caBundle``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    all_names = ["localhost", "127.0.0.1", "::1", *(names or [])]
    sans: list[x509.GeneralName] = []
    for n in dict.fromkeys(all_names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cn = next((n for n in all_names[3:] if n), "localhost")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn[:64]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lanner development")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_path = os.path.join(directory, "tls.crt")
    key_path = os.path.join(directory, "tls.key")
    with open(cert_path, "wb") as f:
        f.write(cert_pem)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    return cert_path, key_path, base64.b64encode(cert_pem).decode()
