/*
 * LD_PRELOAD shim for wrk: make every reconnect a full TLS handshake.
 *
 * wrk closes a connection with SSL_shutdown + SSL_clear and reuses the SSL
 * object for the next connection; SSL_clear keeps the session, so with
 * `Connection: close` wrk resumes the TLS session on every reconnect
 * (TLS 1.2 and 1.3 alike) and measures resumptions, not handshakes. This
 * shim drops the session right after SSL_clear, so the client offers
 * nothing to resume. Built by bench/load/run with: cc -shared -fPIC -ldl.
 * Only prototypes are declared, so no OpenSSL headers are needed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *s, SSL_SESSION *session);

int SSL_clear(SSL *s)
{
    static int (*real_clear)(SSL *) = NULL;
    if (real_clear == NULL) {
        real_clear = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    }
    int r = real_clear(s);
    SSL_set_session(s, NULL);
    return r;
}
