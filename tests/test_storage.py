"""Blob stores: a local folder and a real S3 API (moto's server on loopback), one contract for both."""

from __future__ import annotations

from pathlib import Path

import pytest

from videopipe.storage import BlobStore, LocalBlobStore, S3BlobStore, sha256_file


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs")
    import boto3

    endpoint = request.getfixturevalue("s3_endpoint")
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=endpoint)
    bucket = f"vp-{tmp_path.name[-20:].lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    return S3BlobStore(bucket, "tenant-a", client=client)


def test_put_read_delete(store: BlobStore, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:  # 12 MB: multipart on S3, chunked copies locally
        for i in range(12):
            fh.write(bytes([i]) * (1024 * 1024))
    store.put_file("originals/abc.mp4", big)
    assert store.exists("originals/abc.mp4") and not store.exists("originals/nope.mp4")
    with store.open("originals/abc.mp4") as fh:
        assert fh.read(5) == b"\x00" * 5
    with store.local_path("originals/abc.mp4") as local:
        assert sha256_file(local) == sha256_file(big)
    store.put_file("keyframes/v1/00001.jpg", big)
    store.put_file("keyframes/v1/00002.jpg", big)
    assert store.delete_prefix("keyframes/v1") == 2
    assert not store.exists("keyframes/v1/00001.jpg") and store.exists("originals/abc.mp4")


def test_deleting_a_key_never_deletes_the_keys_it_is_a_prefix_of(store: BlobStore, tmp_path: Path) -> None:
    """Another tenant's copy of the same bytes uploaded without an extension is stored as originals/<hash>:
    deleting it must leave originals/<hash>.mp4 (S3 prefixes are plain strings)."""
    f = tmp_path / "x"
    f.write_bytes(b"video")
    for key in ("originals/abc", "originals/abc.mp4", "originals/abcd", "keyframes/v1/1.jpg", "keyframes/v10/1.jpg"):
        store.put_file(key, f)
    assert store.delete_prefix("originals/abc") == 1
    assert store.delete_prefix("keyframes/v1/") == 1
    assert not store.exists("originals/abc") and not store.exists("keyframes/v1/1.jpg")
    assert all(store.exists(k) for k in ("originals/abc.mp4", "originals/abcd", "keyframes/v10/1.jpg"))


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b"])
def test_keys_cannot_escape(store: BlobStore, key: str, tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_bytes(b"x")
    with pytest.raises(ValueError, match="invalid blob key"):
        store.put_file(key, f)
