#!/usr/bin/env python3
"""An independent RFC 8998 peer for vbank's interop tests: BabaSSL 8.3 (Tongsuo), as embedded in PyPI tongsuopy,
driven through ctypes in strict 国密 TLS 1.3 mode (TLS_SM4_GCM_SM3, curveSM2, sm2sig_sm3 only).

  tongsuo_peer.py client PORT CAFILE MESSAGE   connect to 127.0.0.1:PORT, send MESSAGE, print a JSON result
  tongsuo_peer.py server CERTCHAIN KEY         listen on 127.0.0.1 (port printed first), echo one message back
"""
import ctypes
import glob
import json
import os
import socket
import sys

import tongsuopy

SO = glob.glob(os.path.join(os.path.dirname(tongsuopy.__file__), "backends", "_tongsuo*.so"))[0]
L = ctypes.CDLL(SO)
vp = ctypes.c_void_p
for name, res, args in [
    ("TLS_method", vp, []),
    ("SSL_CTX_new", vp, [vp]),
    ("SSL_CTX_ctrl", ctypes.c_long, [vp, ctypes.c_int, ctypes.c_long, vp]),
    ("SSL_CTX_enable_sm_tls13_strict", None, [vp]),
    ("SSL_CTX_set_ciphersuites", ctypes.c_int, [vp, ctypes.c_char_p]),
    ("SSL_CTX_set_verify", None, [vp, ctypes.c_int, vp]),
    ("SSL_CTX_load_verify_locations", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_char_p]),
    ("SSL_CTX_use_certificate_chain_file", ctypes.c_int, [vp, ctypes.c_char_p]),
    ("SSL_CTX_use_PrivateKey_file", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_new", vp, [vp]),
    ("SSL_set_fd", ctypes.c_int, [vp, ctypes.c_int]),
    ("SSL_ctrl", ctypes.c_long, [vp, ctypes.c_int, ctypes.c_long, vp]),
    ("SSL_connect", ctypes.c_int, [vp]),
    ("SSL_accept", ctypes.c_int, [vp]),
    ("SSL_read", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_write", ctypes.c_int, [vp, ctypes.c_char_p, ctypes.c_int]),
    ("SSL_get_current_cipher", vp, [vp]),
    ("SSL_CIPHER_get_name", ctypes.c_char_p, [vp]),
    ("SSL_get_verify_result", ctypes.c_long, [vp]),
    ("SSL_shutdown", ctypes.c_int, [vp]),
    ("SSL_get_error", ctypes.c_int, [vp, ctypes.c_int]),
    ("ERR_get_error", ctypes.c_ulong, []),
    ("ERR_error_string_n", None, [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t]),
]:
    f = getattr(L, name)
    f.restype = res
    f.argtypes = args

SSL_CTRL_SET_MIN_PROTO_VERSION, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION = 123, 124, 0x0304
SSL_CTRL_SET_TLSEXT_HOSTNAME, SSL_VERIFY_PEER, SSL_FILETYPE_PEM = 55, 1, 1


def errors():
    out = []
    while True:
        e = L.ERR_get_error()
        if not e:
            return "; ".join(out)
        buf = ctypes.create_string_buffer(256)
        L.ERR_error_string_n(e, buf, 256)
        out.append(buf.value.decode())


def context():
    ctx = L.SSL_CTX_new(L.TLS_method())
    L.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MIN_PROTO_VERSION, TLS1_3_VERSION, None)
    L.SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, TLS1_3_VERSION, None)
    L.SSL_CTX_enable_sm_tls13_strict(ctx)
    assert L.SSL_CTX_set_ciphersuites(ctx, b"TLS_SM4_GCM_SM3") == 1, errors()
    return ctx


def result(ssl, ok, **extra):
    cipher = L.SSL_get_current_cipher(ssl)
    name = L.SSL_CIPHER_get_name(cipher).decode() if cipher else None
    print(json.dumps(dict(ok=ok, cipher=name, errors=errors(), **extra)), flush=True)


def client(port, cafile, message):
    ctx = context()
    L.SSL_CTX_load_verify_locations(ctx, cafile.encode(), None)
    L.SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER if os.environ.get("TONGSUO_VERIFY", "1") == "1" else 0, None)
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    sock.settimeout(None)  # the C library reads the fd directly: it must be blocking
    ssl = L.SSL_new(ctx)
    L.SSL_set_fd(ssl, sock.fileno())
    L.SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, ctypes.c_char_p(b"localhost"))
    rc = L.SSL_connect(ssl)
    if rc != 1:
        return result(ssl, False, verify=L.SSL_get_verify_result(ssl), ssl_error=L.SSL_get_error(ssl, rc))
    data = message.encode()
    L.SSL_write(ssl, data, len(data))
    buf = ctypes.create_string_buffer(4096)
    n = L.SSL_read(ssl, buf, 4096)
    result(ssl, True, verify=L.SSL_get_verify_result(ssl), echo=buf.raw[:max(n, 0)].decode(errors="replace"))
    L.SSL_shutdown(ssl)


def server(chain, key):
    ctx = context()
    assert L.SSL_CTX_use_certificate_chain_file(ctx, chain.encode()) == 1, errors()
    assert L.SSL_CTX_use_PrivateKey_file(ctx, key.encode(), SSL_FILETYPE_PEM) == 1, errors()
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    lsock.settimeout(20)
    print(lsock.getsockname()[1], flush=True)
    conn, _ = lsock.accept()
    conn.settimeout(None)
    ssl = L.SSL_new(ctx)
    L.SSL_set_fd(ssl, conn.fileno())
    if L.SSL_accept(ssl) != 1:
        return result(ssl, False)
    buf = ctypes.create_string_buffer(4096)
    n = L.SSL_read(ssl, buf, 4096)
    got = buf.raw[:max(n, 0)]
    L.SSL_write(ssl, got, len(got))
    result(ssl, True, received=got.decode(errors="replace"))
    L.SSL_shutdown(ssl)


if __name__ == "__main__":
    {"client": client, "server": server}[sys.argv[1]](*sys.argv[2:])
