"""REST doors of attachments: announce an upload, and the node's own signed upload and
download URLs when attachments live in its folder (the embedded default)."""

from __future__ import annotations

from aiohttp import web

from handlers.common import RestDoor, json_response
from services.attachments import AttachmentService
from services.clock import Clock
from services.errors import Forbidden, Invalid, NotFound, TooLarge
from storage.objects import FolderObjects

__all__ = ["routes"]


def routes(
    door: RestDoor,
    attachments: AttachmentService,
    *,
    folder: FolderObjects | None,
    clock: Clock,
) -> web.RouteTableDef:
    table = web.RouteTableDef()

    @table.post("/api/v1/uploads")
    async def announce(request: web.Request) -> web.Response:
        identity = await door.identity(request)
        body = await door.body(request)
        target = await attachments.announce(
            identity.user_id,
            name=body.string("name", max_len=255, strip=True),
            mime=body.string("mime", max_len=100),
            size=body.integer("size", minimum=1, maximum=2**53),
        )
        return json_response(target, status=201)

    def signed(request: web.Request, method: str) -> str:
        """The upload id of a URL this node signed for ``method``, still valid."""
        upload_id = request.match_info["upload_id"]
        if folder is None:
            raise NotFound("uploads are not kept on this node")
        if not folder.valid(
            method,
            upload_id,
            request.query.get("expires", ""),
            request.query.get("signature", ""),
            clock.now(),
        ):
            raise Forbidden("this link is not valid (forged, for another upload, or expired)")
        return upload_id

    @table.put("/api/v1/uploads/{upload_id}/content")
    async def put_content(request: web.Request) -> web.Response:
        upload = await attachments.upload(signed(request, "PUT"))
        assert folder is not None
        if request.content_length is not None and request.content_length != upload.size:
            raise Invalid(f"the upload was announced as {upload.size} bytes")
        written = await folder.write(
            upload.object_key, request.content.iter_chunked(65536), limit=upload.size
        )
        if written < 0:
            raise TooLarge(f"the upload was announced as {upload.size} bytes")
        if written != upload.size:
            await folder.delete(upload.object_key)
            raise Invalid(f"the upload was announced as {upload.size} bytes, {written} came")
        return web.Response(status=204)

    @table.get("/api/v1/uploads/{upload_id}/content")
    async def get_content(request: web.Request) -> web.StreamResponse:
        upload = await attachments.upload(signed(request, "GET"))
        assert folder is not None
        path = folder.path(upload.object_key)
        if upload.message_id is None or not path.is_file():
            raise NotFound("no such attachment")
        return web.FileResponse(
            path,
            headers={
                "Content-Type": upload.mime,
                "Content-Disposition": "attachment",
                "Cache-Control": "private, max-age=300",
            },
        )

    return table
