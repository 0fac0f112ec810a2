"""A real RTSP server for the tests: GStreamer's rtsp-server on 127.0.0.1.

Run with the system Python that has GStreamer's introspection bindings (Debian:
python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-{good,bad,ugly}
gstreamer1.0-libav), not the project's virtual environment:

    /usr/bin/python3 tests/pipeline/rtsp_server.py --port 8554 --path /cam \
        --user u --password p
    /usr/bin/python3 tests/pipeline/rtsp_server.py --port 8554 --path /in \
        --record out.h264

Serve mode: a live H.264 test pattern (``--fps``, ``--drop`` = probability that a
frame is dropped before encoding, so the stream's own timestamps show gaps).
Record mode: accepts an RTSP push (ANNOUNCE/RECORD) and writes the H.264 it
receives as an Annex B byte stream. Prints ``READY`` when listening.
"""

from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="320x240")
    p.add_argument("--drop", type=float, default=0.0)
    p.add_argument("--record", metavar="FILE", help="receive a push into FILE")
    args = p.parse_args()
    Gst.init(None)
    width, height = args.size.split("x")

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    if args.record:
        factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
        factory.set_launch(
            "( rtph264depay name=depay0 ! h264parse config-interval=-1 ! "
            "video/x-h264,stream-format=byte-stream,alignment=au ! "
            f"filesink location={args.record} sync=false )"
        )
    else:
        drop = f"identity drop-probability={args.drop} ! " if args.drop else ""
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! "
            f"video/x-raw,width={width},height={height},framerate={args.fps}/1 ! "
            f"{drop}x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={args.fps} ! rtph264pay name=pay0 pt=96 config-interval=1 )"
        )
        factory.set_shared(True)
    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, args.password),
                       token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        for perm in ("media.factory.access", "media.factory.construct"):
            permissions.add_permission_for_role("user", perm, True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("READY", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
