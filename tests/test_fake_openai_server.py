"""The fake chat server stays quiet when a client hangs up, as clients past a deadline do."""

import socket
import struct
import time

from fake_openai_server import FakeOpenAIServer


def test_a_client_resetting_its_connection_prints_no_traceback(capfd):
    with FakeOpenAIServer() as server:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\n")
            # Linger 0: close sends a reset instead of a clean shutdown.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.3)
    assert "Traceback" not in capfd.readouterr().err
