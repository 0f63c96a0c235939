"""C2PA Content Credentials for generated images, through c2pa-python (an optional
dependency, imported only when signing or reading).

A signed manifest says the image was created (`c2pa.created`) by a trained algorithmic
model (IPTC `trainedAlgorithmicMedia`), names the producing software, and carries the
pixgate image id in a custom `org.pixgate.image` assertion.

Order with the TC260 label (`label.py`): encode, then `label.label_file`, then `sign_image`
last. C2PA hashes the file's bytes, so nothing may change the file after signing; the
TC260 HMAC covers the decoded pixels, which embedding a manifest leaves as they were.

No timestamp authority is used (servers may have no internet access), so a signature is
only as good as the certificate's validity period.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIME_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CUSTOM_LABEL = "org.pixgate.image"
ACTIONS_LABEL = "c2pa.actions.v2"


@dataclass(frozen=True)
class C2paSigner:
    """What signing needs: the PEM certificate chain (end-entity certificate first), the
    PEM private key and the c2pa algorithm name (`es256`, `ps256` or `ed25519`). A native
    c2pa signer is made from these for each signature, so one C2paSigner can be shared
    between threads."""

    cert_chain_pem: bytes
    private_key_pem: bytes
    alg: str

    def __repr__(self) -> str:  # keep the key out of logs
        return f"C2paSigner(alg={self.alg!r})"


def _require_c2pa(what: str) -> Any:
    """The c2pa module, or a ValueError saying how to install it."""
    try:
        import c2pa
    except ImportError as exc:
        raise ValueError(f"{what}: C2PA needs c2pa-python (pip install c2pa-python)") from exc
    return c2pa


def _read_pem(path: str | Path, kind: str) -> bytes:
    """The bytes of a PEM file, or a ValueError naming the path."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read C2PA {kind} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise ValueError(f"C2PA {kind} {path} is not PEM")
    return data


def _algorithm(key: Any, key_path: str | Path) -> str:
    """The c2pa algorithm for a private key."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ec.EllipticCurvePrivateKey):
        if isinstance(key.curve, ec.SECP256R1):
            return "es256"
        if isinstance(key.curve, ec.SECP384R1):
            return "es384"
        raise ValueError(f"C2PA key {key_path}: EC curve {key.curve.name} is not supported")
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    raise ValueError(f"C2PA key {key_path}: unsupported key type {type(key).__name__}")


def load_c2pa_signer(cert_path: str | Path, key_path: str | Path) -> C2paSigner:
    """A signer from a PEM certificate chain (end-entity first, then intermediates) and its
    PEM private key. ValueError, naming the file, when a file is missing, unreadable or not
    PEM, when the key is not the certificate's, when c2pa refuses to sign with the
    certificate (its profile needs e.g. keyUsage digitalSignature, an extended key usage
    such as emailProtection, an authority key id), or when c2pa-python is not installed."""
    _require_c2pa(f"C2PA certificate {cert_path}")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem = _read_pem(cert_path, "certificate")
    key_pem = _read_pem(key_path, "key")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        raise ValueError(f"C2PA certificate {cert_path} is not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"C2PA key {key_path} is not an unencrypted PEM private key") from exc
    alg = _algorithm(key, key_path)
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if chain[0].public_key().public_bytes(der, raw) != key.public_key().public_bytes(der, raw):
        raise ValueError(f"C2PA key {key_path} does not match the first certificate in {cert_path}")
    signer = C2paSigner(cert_chain_pem=cert_pem, private_key_pem=key_pem, alg=alg)
    _probe(signer, cert_path)
    return signer


def _probe(signer: C2paSigner, cert_path: str | Path) -> None:
    """Sign a 1x1 PNG, so a certificate c2pa refuses fails at load time, not per image."""
    c2pa = _require_c2pa(f"C2PA certificate {cert_path}")
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (1, 1)).save(out, format="PNG")
    try:
        sign_image(out.getvalue(), "png", signer, title="probe", producer="pixgate", image_id="")
    except c2pa.C2paError as exc:
        raise ValueError(f"C2PA certificate {cert_path} was refused by c2pa: {exc}") from exc


def _mime(fmt: str) -> str:
    """The MIME type of a pixgate output format, or a ValueError."""
    try:
        return MIME_TYPES[fmt]
    except KeyError:
        raise ValueError(f"no C2PA signing for format {fmt!r}") from None


def manifest_definition(title: str, producer: str, image_id: str, mime: str) -> dict[str, Any]:
    """The manifest definition a Builder takes for a generated image."""
    action = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": producer},
    }
    return {
        "claim_generator_info": [{"name": "pixgate"}],
        "title": title,
        "format": mime,
        "assertions": [
            {"label": ACTIONS_LABEL, "data": {"actions": [action]}},
            {"label": CUSTOM_LABEL, "data": {"id": image_id}},
        ],
    }


def sign_image(
    data: bytes, fmt: str, signer: C2paSigner, *, title: str, producer: str, image_id: str
) -> bytes:
    """`data` (an encoded png, jpeg or webp file) with a signed C2PA manifest embedded.
    ValueError for other formats or when c2pa-python is missing; c2pa.C2paError when the
    library refuses the file or the certificate."""
    mime = _mime(fmt)
    c2pa = _require_c2pa("C2PA signing")
    definition = manifest_definition(title, producer, image_id, mime)
    info = c2pa.C2paSignerInfo(signer.alg, signer.cert_chain_pem, signer.private_key_pem, None)
    with c2pa.Signer.from_info(info) as native, c2pa.Builder(json.dumps(definition)) as builder:
        dest = io.BytesIO()
        builder.sign(native, mime, io.BytesIO(data), dest)
    return dest.getvalue()


def read_manifest(data: bytes, fmt: str) -> dict[str, Any] | None:
    """The file's active C2PA manifest as a dict, with the store's `validation_state`
    (e.g. "Valid", "Invalid") and `validation_status` (the failure entries, each with a
    `code` such as `assertion.dataHash.mismatch`) and `validation_results` added; None
    when it carries none."""
    mime = _mime(fmt)
    c2pa = _require_c2pa("C2PA reading")
    reader = c2pa.Reader.try_create(mime, io.BytesIO(data))
    if reader is None:
        return None
    with reader:
        store = json.loads(reader.json())
    if not store or store.get("active_manifest") not in store.get("manifests", {}):
        return None
    manifest: dict[str, Any] = dict(store["manifests"][store["active_manifest"]])
    manifest["validation_state"] = store.get("validation_state")
    manifest["validation_status"] = store.get("validation_status", [])
    manifest["validation_results"] = store.get("validation_results")
    return manifest
