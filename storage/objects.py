"""Object storage for attachments, behind one interface with two implementations.

``S3Objects`` (aiobotocore; any S3 API): clients PUT to a presigned URL and
members GET from presigned URLs. ``FolderObjects`` (the embedded default, or a
folder every node shares): the node itself takes the PUT and serves the GET,
both at URLs signed with HMAC-SHA256 of the server secret that expire.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

__all__ = ["FolderObjects", "ObjectStore", "S3Objects", "UploadTarget"]

UploadTarget = dict[str, Any]  # {url, method, headers}
_HEAD = 64  # bytes read back to check an upload's type


class ObjectStore(Protocol):
    async def upload_target(
        self, key: str, *, upload_id: str, mime: str, size: int, expires_at: float, now: float
    ) -> UploadTarget: ...

    async def stat(self, key: str) -> tuple[int, bytes] | None:
        """The stored size and first bytes, or None when nothing was uploaded."""
        ...

    async def download_url(
        self, key: str, *, upload_id: str, name: str, mime: str, expires_at: float, now: float
    ) -> str: ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


class FolderObjects:
    def __init__(self, folder: Path, *, secret: str, public_url: str = "") -> None:
        self._folder = folder
        self._secret = secret.encode()
        self._base = public_url.rstrip("/") + "/api/v1/uploads/"

    # -- URLs -------------------------------------------------------------------------------

    def sign(self, method: str, upload_id: str, expires: int) -> str:
        message = f"{method}\n{upload_id}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def valid(self, method: str, upload_id: str, expires: str, signature: str, now: float) -> bool:
        """A URL of ours, for this method and upload, not yet expired."""
        if not expires.isdigit() or int(expires) < now:
            return False
        return hmac.compare_digest(self.sign(method, upload_id, int(expires)), signature)

    def _url(self, method: str, upload_id: str, expires_at: float) -> str:
        expires = int(expires_at)
        signature = self.sign(method, upload_id, expires)
        return f"{self._base}{upload_id}/content?expires={expires}&signature={signature}"

    async def upload_target(
        self, key: str, *, upload_id: str, mime: str, size: int, expires_at: float, now: float
    ) -> UploadTarget:
        return {
            "url": self._url("PUT", upload_id, expires_at),
            "method": "PUT",
            "headers": {"Content-Type": mime},
        }

    async def download_url(
        self, key: str, *, upload_id: str, name: str, mime: str, expires_at: float, now: float
    ) -> str:
        return self._url("GET", upload_id, expires_at)

    # -- bytes ------------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self._folder / key

    async def write(self, key: str, chunks: AsyncIterator[bytes], *, limit: int) -> int:
        """Store the body (at most ``limit`` bytes); the bytes written, or -1 past it."""
        path = self.path(key)
        await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        written = 0
        with partial.open("wb") as out:
            async for chunk in chunks:
                written += len(chunk)
                if written > limit:
                    break
                out.write(chunk)
        if written > limit:
            partial.unlink(missing_ok=True)
            return -1
        os.replace(partial, path)
        return written

    async def stat(self, key: str) -> tuple[int, bytes] | None:
        path = self.path(key)

        def read() -> tuple[int, bytes] | None:
            try:
                with path.open("rb") as f:
                    return path.stat().st_size, f.read(_HEAD)
            except FileNotFoundError:
                return None

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, missing_ok=True)

    async def close(self) -> None:
        return None


class S3Objects:
    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        self._bucket = bucket
        self._prefix = prefix
        self._context = get_session().create_client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region or "us-east-1",
            config=AioConfig(signature_version="s3v4"),
        )
        self._client: Any = None

    async def start(self) -> None:
        self._client = await self._context.__aenter__()

    async def close(self) -> None:
        if self._client is not None:
            await self._context.__aexit__(None, None, None)
            self._client = None

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def upload_target(
        self, key: str, *, upload_id: str, mime: str, size: int, expires_at: float, now: float
    ) -> UploadTarget:
        url = await self._client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": self._key(key), "ContentType": mime},
            ExpiresIn=max(1, int(expires_at - now)),
        )
        return {"url": url, "method": "PUT", "headers": {"Content-Type": mime}}

    async def stat(self, key: str) -> tuple[int, bytes] | None:
        try:
            head = await self._client.head_object(Bucket=self._bucket, Key=self._key(key))
        except self._client.exceptions.ClientError:
            return None
        got = await self._client.get_object(
            Bucket=self._bucket, Key=self._key(key), Range=f"bytes=0-{_HEAD - 1}"
        )
        async with got["Body"] as body:
            first = await body.read()
        return int(head["ContentLength"]), first

    async def download_url(
        self, key: str, *, upload_id: str, name: str, mime: str, expires_at: float, now: float
    ) -> str:
        url: str = await self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._bucket,
                "Key": self._key(key),
                "ResponseContentType": mime,
                "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(name)}",
            },
            ExpiresIn=max(1, int(expires_at - now)),
        )
        return url

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self._bucket, Key=self._key(key))
