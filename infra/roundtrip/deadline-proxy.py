"""The deadline shim of infra/lambda-roundtrip: forwards the Runtime API, rewriting a
relative Lambda-Runtime-Deadline-Ms into an absolute one. Long polls (/next) pass through.
Usage: deadline-proxy.py LISTEN_PORT UPSTREAM_PORT"""
import http.client, http.server, sys, time

listen, upstream = int(sys.argv[1]), int(sys.argv[2])
DROP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
        "proxy-connection", "content-length", "date", "server"}


def absolute(v):
    n = int(v)
    return str(int(time.time() * 1000) + n) if n < 10**12 else v


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else None

    def forward(self):
        body = self.read_body()
        conn = http.client.HTTPConnection("127.0.0.1", upstream)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in DROP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() in DROP:
                    continue
                if k.lower() == "lambda-runtime-deadline-ms":
                    v = absolute(v)
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_DELETE = forward


server = http.server.ThreadingHTTPServer(("127.0.0.1", listen), Handler)
server.daemon_threads = True
server.serve_forever()
