"""REST doors of attachments: announce an upload, and the node's own signed upload and
download URLs when attachments live in its folder (the embedded default)."""

from __future__ import annotations

from aiohttp import web

from handlers.api import Api, Auth
from handlers.common import RestDoor, json_response
from services.attachments import AttachmentService
from services.clock import Clock
from services.errors import Forbidden, Invalid, NotFound, TooLarge
from services.wire import rest
from storage.objects import FolderObjects

__all__ = ["routes"]


def routes(
    door: RestDoor,
    attachments: AttachmentService,
    *,
    folder: FolderObjects | None,
    clock: Clock,
) -> Api:
    api = Api(door, tag="chat")

    @api.route(
        "POST",
        "/api/v1/uploads",
        summary="Announce an upload",
        description="Answers where to send the bytes (a presigned S3 URL, or the node "
        "itself). Size and type limits are the node's settings: a file past the size is "
        "413, a type not taken 400. A complete upload can then ride on chat:send.",
        auth=Auth.BEARER,
        body=rest.Announce,
        answers={201: rest.UploadTarget},
        errors=(413,),
        examples={"body": {"name": "x-ray.jpg", "mime": "image/jpeg", "size": 48213}},
    )
    async def announce(request: web.Request, body: rest.Announce) -> web.Response:
        identity = await door.identity(request)
        target = await attachments.announce(
            identity.user_id, name=body.name, mime=body.mime, size=body.size
        )
        return json_response(target, status=201)

    def signed(request: web.Request, method: str, link: rest.SignedQuery) -> str:
        """The upload id of a URL this node signed for ``method``, still valid."""
        upload_id = request.match_info["upload_id"]
        if folder is None:
            raise NotFound("uploads are not kept on this node")
        if not folder.valid(method, upload_id, link.expires, link.signature, clock.now()):
            raise Forbidden("this link is not valid (forged, for another upload, or expired)")
        return upload_id

    @api.route(
        "PUT",
        "/api/v1/uploads/{upload_id}/content",
        summary="Send an upload's bytes to the node (a URL it signed)",
        description="Only on nodes that keep uploads in their folder; the URL from POST "
        "/uploads carries `expires` and `signature`. A forged or expired link is 403.",
        auth=Auth.SIGNED,
        query=rest.SignedQuery,
        answers={204: None},
        errors=(400, 403, 413),
        body_type="application/octet-stream",
    )
    async def put_content(request: web.Request, link: rest.SignedQuery) -> web.Response:
        upload = await attachments.upload(signed(request, "PUT", link))
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

    @api.route(
        "GET",
        "/api/v1/uploads/{upload_id}/content",
        summary="Read an attachment (a link the node signed)",
        description="The `url` of a message's attachment, valid for minutes. A forged or "
        "expired link is 403.",
        auth=Auth.SIGNED,
        query=rest.SignedQuery,
        answers={200: None},
        errors=(403,),
        answer_type="application/octet-stream",
    )
    async def get_content(request: web.Request, link: rest.SignedQuery) -> web.StreamResponse:
        upload = await attachments.upload(signed(request, "GET", link))
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

    return api
