"""The MTA side of the milter protocol (version 6), scripted, for feeding mailpulse-milter input
no real Postfix would send: missing macros, NUL and 8-bit bytes in headers, garbage.
Packets are a 4-byte big-endian length, a command byte and its data (libmilter's mfdef.h)."""
import socket
import struct

SMFIF_ALL = 0x1FF
SMFIP_ALL = 0x1FFFFF
SMFIP_NR_HDR, SMFIP_NR_BODY = 0x80, 0x80000
SMFIP_NR_CONN, SMFIP_NR_HELO, SMFIP_NR_MAIL, SMFIP_NR_RCPT = 0x1000, 0x2000, 0x4000, 0x8000
SMFIP_NODATA, SMFIP_NOEOH, SMFIP_RCPT_REJ = 0x200, 0x40, 0x800
NO_REPLY = {b"L": SMFIP_NR_HDR, b"B": SMFIP_NR_BODY}


class MilterClient:
    def __init__(self, socket_path: str, timeout: float = 10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(socket_path)
        self.protocol = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, cmd: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def _read_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("milter closed the connection")
            buf += chunk
        return buf

    def reply(self) -> tuple:
        (length,) = struct.unpack(">I", self._read_exact(4))
        body = self._read_exact(length)
        return body[:1], body[1:]

    def negotiate(self) -> tuple:
        self.send(b"O", struct.pack(">III", 6, SMFIF_ALL, SMFIP_ALL))
        cmd, data = self.reply()
        assert cmd == b"O", cmd
        _, actions, self.protocol = struct.unpack(">III", data[:12])
        return actions, self.protocol

    def macros(self, stage: bytes, pairs: dict) -> None:
        data = b"".join(k.encode() + b"\0" + v + b"\0" for k, v in pairs.items())
        self.send(b"D", stage + data)

    def command(self, cmd: bytes, data: bytes = b"") -> bytes | None:
        """Sends a command; returns the reply's command byte, or None for a no-reply step."""
        self.send(cmd, data)
        if cmd in NO_REPLY and self.protocol & NO_REPLY[cmd]:
            return None
        return self.reply()[0]

    def connect(self, host: bytes, family: bytes, port: int, address: bytes) -> bytes:
        return self.command(b"C", host + b"\0" + family + struct.pack(">H", port) + address + b"\0")

    def header(self, name: bytes, value: bytes) -> bytes | None:
        return self.command(b"L", name + b"\0" + value + b"\0")
