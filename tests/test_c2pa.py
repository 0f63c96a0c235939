"""C2PA signing (processing/c2pa_sign.py) on top of the TC260 label, with a throwaway
certificate chain made here: an EC P-256 root CA and an end-entity certificate with the
extensions c2pa's certificate profile asks for (digitalSignature, emailProtection EKU,
not a CA, subject and authority key ids)."""

from __future__ import annotations

import datetime
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("c2pa")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from pixgate.processing import c2pa_sign, label

KEY = label.label_key(b"k")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pixgate test"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _usage(*, sign: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _chain() -> tuple[bytes, bytes, ec.EllipticCurvePrivateKey]:
    """(leaf + root PEM chain, leaf key PEM, root key)."""
    now = datetime.datetime.now(datetime.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    root_ski = x509.SubjectKeyIdentifier.from_public_key(root_key.public_key())
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("pixgate test root"))
        .issuer_name(_name("pixgate test root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False, cert_sign=True), critical=True)
        .add_extension(root_ski, critical=False)
        .sign(root_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("pixgate test signer"))
        .issuer_name(root.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + root.public_bytes(pem)
    key = leaf_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return chain, key, root_key


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("c2pa")
    chain, key, _ = _chain()
    (tmp / "chain.pem").write_bytes(chain)
    (tmp / "key.pem").write_bytes(key)
    return tmp / "chain.pem", tmp / "key.pem"


@pytest.fixture(scope="module")
def signer(files: tuple[Path, Path]) -> c2pa_sign.C2paSigner:
    return c2pa_sign.load_c2pa_signer(*files)


def _labelled(fmt: str) -> bytes:
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4 % 256, y * 5 % 256, (x * y) % 256) for y in range(48) for x in range(64)])
    out = io.BytesIO()
    image.save(out, format=fmt.upper(), **({"quality": 90} if fmt != "png" else {}))
    return label.label_file(out.getvalue(), fmt, KEY, "job-0", producer="p")


def _codes(manifest: dict) -> list[str]:
    return [entry.get("code", "") for entry in manifest.get("validation_status") or []]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_sign_keeps_label_and_reads_back(fmt: str, signer: c2pa_sign.C2paSigner) -> None:
    data = _labelled(fmt)
    assert c2pa_sign.read_manifest(data, fmt) is None
    signed = c2pa_sign.sign_image(
        data, fmt, signer, title=f"job-0.{fmt}", producer="pixgate-test/1", image_id="job-0"
    )
    assert signed != data
    manifest = c2pa_sign.read_manifest(signed, fmt)
    assert manifest is not None
    assert manifest["title"] == f"job-0.{fmt}"
    assert manifest["claim_generator_info"][0]["name"] == "pixgate"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    actions = next(v["actions"] for k, v in assertions.items() if k.startswith("c2pa.actions"))
    created = [a for a in actions if a["action"] == "c2pa.created"]
    assert len(created) == 1
    assert created[0]["digitalSourceType"] == c2pa_sign.TRAINED_ALGORITHMIC_MEDIA
    assert created[0]["softwareAgent"]["name"] == "pixgate-test/1"
    assert assertions[c2pa_sign.CUSTOM_LABEL] == {"id": "job-0"}
    # The throwaway root is in no trust list: only trust codes may be reported.
    assert manifest["validation_state"] in ("Valid", "Trusted"), _codes(manifest)
    assert all(code.startswith("signingCredential.untrusted") for code in _codes(manifest))
    assert label.inspect_file(signed, KEY).verdict == "valid"


def _flip_pixel_byte(signed: bytes, fmt: str) -> bytes:
    """`signed` with one byte changed inside the compressed image data."""
    marker = {"png": b"IDAT", "jpeg": b"\xff\xda", "webp": b"VP8 "}[fmt]
    at = signed.rindex(marker) + 12  # the last one: a thumbnail in the manifest comes first
    return signed[:at] + bytes([signed[at] ^ 0x55]) + signed[at + 1 :]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_tampered_bytes_fail_validation(fmt: str, signer: c2pa_sign.C2paSigner) -> None:
    signed = c2pa_sign.sign_image(
        _labelled(fmt), fmt, signer, title="t", producer="p", image_id="job-0"
    )
    manifest = c2pa_sign.read_manifest(_flip_pixel_byte(signed, fmt), fmt)
    assert manifest is not None
    assert manifest["validation_state"] == "Invalid"
    assert "assertion.dataHash.mismatch" in _codes(manifest), _codes(manifest)


def test_unsupported_format(signer: c2pa_sign.C2paSigner) -> None:
    with pytest.raises(ValueError, match="gif"):
        c2pa_sign.sign_image(b"GIF89a", "gif", signer, title="t", producer="p", image_id="i")


def test_missing_and_bad_files(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain, key = files
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=str(missing)):
        c2pa_sign.load_c2pa_signer(missing, key)
    with pytest.raises(ValueError, match=str(missing)):
        c2pa_sign.load_c2pa_signer(chain, missing)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ValueError, match=str(bad)):
        c2pa_sign.load_c2pa_signer(bad, key)
    with pytest.raises(ValueError, match=str(bad)):
        c2pa_sign.load_c2pa_signer(chain, bad)
    garbled = tmp_path / "garbled.pem"
    garbled.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(ValueError, match=str(garbled)):
        c2pa_sign.load_c2pa_signer(garbled, key)


def test_key_not_matching_cert(files: tuple[Path, Path], tmp_path: Path) -> None:
    chain, _ = files
    other = tmp_path / "other.pem"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ValueError, match="does not match"):
        c2pa_sign.load_c2pa_signer(chain, other)


def test_certificate_c2pa_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """c2pa checks the certificate profile when signing; without an extended key usage it
    refuses, and loading says so instead of every later signature failing."""
    add = x509.CertificateBuilder.add_extension

    def no_eku(self: x509.CertificateBuilder, ext: x509.ExtensionType, critical: bool):
        return self if isinstance(ext, x509.ExtendedKeyUsage) else add(self, ext, critical)

    monkeypatch.setattr(x509.CertificateBuilder, "add_extension", no_eku)
    chain, key, _ = _chain()
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "key.pem").write_bytes(key)
    with pytest.raises(ValueError, match="refused by c2pa"):
        c2pa_sign.load_c2pa_signer(tmp_path / "chain.pem", tmp_path / "key.pem")


def test_a_server_with_c2pa_on_serves_images_with_both_labels(make_server, files):
    """c2pa = true: every file carries the TC260 label and signed C2PA credentials."""
    import base64

    from pixgate.processing.label import inspect_file, label_key
    from tests.conftest import INSTANT

    cert, key = files
    server = make_server(models=[INSTANT], demo=False, c2pa=True, c2pa_cert=cert, c2pa_key=key)
    api_key = server.create_key(credit="1")
    with server.client(api_key) as c:
        r = c.post(
            "/v1/images/generations",
            json={"model": "instant", "prompt": "a cat", "response_format": "b64_json"},
        )
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["data"][0]["b64_json"])
    assert inspect_file(data, label_key(server.core._server_secret)).verdict == "valid"
    manifest = c2pa_sign.read_manifest(data, "png")
    assert manifest is not None and manifest["validation_state"] != "Invalid", manifest
    assert "trainedAlgorithmicMedia" in json.dumps(manifest)
