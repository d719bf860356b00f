#!/usr/bin/env python3
"""A smart-HTTP Git server over TLS that wants an access token, for pacer's tests.

Usage: git_https_server.py PORT ROOT CERT KEY   (the token in $GIT_HTTPS_TOKEN)

Serves every repository under ROOT through `git http-backend` (CGI) on
https://127.0.0.1:PORT/, as forges do: a request whose Basic password is not
the token is answered 401 with `WWW-Authenticate: Basic realm="git"`. Logs one
line per request to stderr (never the credentials).
"""
import base64
import http.server
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.parse


def main():
    port, root, cert, key = sys.argv[1:5]
    token = os.environ["GIT_HTTPS_TOKEN"]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            # The handshake runs in the connection's thread, so a client that
            # connects and never speaks TLS (a readiness probe, or one that
            # refuses the certificate) holds up no one else.
            try:
                conn = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                log(f"TLS handshake with {client_address[0]} failed: {e}")
                return
            try:
                super().finish_request(conn, client_address)
                # close_notify, so that the client sees a clean end.
                conn.unwrap()
            except (ssl.SSLError, OSError) as e:
                log(f"connection from {client_address[0]}: {e}")
            finally:
                conn.close()

    class Handler(http.server.BaseHTTPRequestHandler):
        # Keep-alive, and the CGI's output streamed in chunks: libgit2 reads
        # a body only by its length or its chunks, never up to a close.
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            self.serve()

        def do_POST(self):
            self.serve()

        def serve(self):
            body = self.read_body()
            user, refusal = self.authorized_user(token)
            if refusal:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                log(f"refused: {refusal}")
                return
            self.run_backend(root, user, body)

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        # Trailers, up to the blank line.
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def authorized_user(self, token):
            """(user, None), or (None, why not) without the password."""
            scheme, _, value = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "basic":
                return None, "no credentials"
            try:
                user, _, password = base64.b64decode(value).decode().partition(":")
            except ValueError:
                return None, "malformed Basic credentials"
            if password != token:
                return None, f"wrong token for user {user!r}"
            return user, None

        def run_backend(self, root, user, body):
            path, _, query = self.path.partition("?")
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "GATEWAY_INTERFACE": "CGI/1.1",
                "SERVER_PROTOCOL": "HTTP/1.0",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": urllib.parse.unquote(path),
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": user,
                "REMOTE_ADDR": self.client_address[0],
            }
            for header, var in [
                ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
                ("Git-Protocol", "GIT_PROTOCOL"),
            ]:
                if header in self.headers:
                    env[var] = self.headers[header]
            backend = subprocess.Popen(
                ["git", "http-backend"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            # Written from a thread: the backend may start answering before
            # it has read the whole request, and a full pipe either way would
            # otherwise deadlock.
            def feed():
                try:
                    backend.stdin.write(body)
                finally:
                    backend.stdin.close()

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            status, headers = "200 OK", []
            while True:
                line = backend.stdout.readline().rstrip(b"\r\n")
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "status":
                    status = value.strip()
                else:
                    headers.append((name, value.strip()))
            code, _, reason = status.partition(" ")
            self.send_response(int(code), reason or None)
            for name, value in headers:
                self.send_header(name, value)
            sized = any(name.lower() == "content-length" for name, _ in headers)
            if not sized:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if sized:
                shutil.copyfileobj(backend.stdout, self.wfile)
            else:
                while chunk := backend.stdout.read1(65536):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            feeder.join()
            backend.wait()

        def log_message(self, fmt, *args):
            log(f"{self.address_string()} {fmt % args}")

    server = Server(("127.0.0.1", int(port)), Handler)
    log(f"serving {root} on https://127.0.0.1:{port}/")
    server.serve_forever()


def log(msg):
    print(f"[git-https] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
