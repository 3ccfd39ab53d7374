/*
 * tls.c — TLS for stream protocols on libuv, through OpenSSL memory BIOs.
 *
 * libuv owns the socket; OpenSSL never touches it. Bytes read from the network
 * are written into the read BIO, SSL_read yields plaintext, and whatever
 * OpenSSL wants to send (handshake, records, alerts) is drained from the write
 * BIO and queued on the socket by the caller. The HTTP server and the MLLP
 * listener share this. Only TLS 1.2 and 1.3 are accepted, with OpenSSL's
 * default (secure) cipher list minus anything without forward secrecy.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <openssl/err.h>
#include <string.h>

struct hv__tls {
    SSL *ssl;
    BIO *rbio; /* network → SSL */
    BIO *wbio; /* SSL → network */
};

SSL_CTX *hv__tls_server_ctx(const char *cert_file, const char *key_file, hv_error_t *err) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    char why[256];
    if (ctx == NULL) {
        hv_error_set(err, HV_ENOMEM, NULL, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS");
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        hv_error_set(err, HV_ECONFIG, cert_file, "cannot load the TLS certificate: %s", why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ERR_error_string_n(ERR_get_error(), why, sizeof(why));
        hv_error_set(err, HV_ECONFIG, key_file, "cannot load the TLS key: %s", why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        hv_error_set(err, HV_ECONFIG, key_file, "the TLS key does not match the certificate");
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

hv__tls_t *hv__tls_new(SSL_CTX *ctx) {
    hv__tls_t *t = hv_calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        if (t->ssl != NULL) SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        hv_free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL now owns both BIOs */
    SSL_set_accept_state(t->ssl);
    return t;
}

void hv__tls_free(hv__tls_t *t) {
    if (t == NULL) return;
    SSL_free(t->ssl);
    hv_free(t);
}

static int drain(hv__tls_t *t, hv_buf_t *net) {
    char tmp[16384];
    int n;
    while ((n = BIO_read(t->wbio, tmp, sizeof(tmp))) > 0) {
        int rc = hv_buf_append(net, tmp, (size_t)n);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

int hv__tls_feed(hv__tls_t *t, const char *in, size_t n, hv_buf_t *plain, hv_buf_t *net) {
    char tmp[16384];
    int rc;
    while (n > 0) {
        int w = BIO_write(t->rbio, in, n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0) return HV_ENOMEM;
        in += w;
        n -= (size_t)w;
    }
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            rc = drain(t, net);
            if (rc != HV_OK) return rc;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return HV_OK;
            ERR_clear_error();
            return HV_EPROTO;
        }
    }
    for (;;) {
        int r = SSL_read(t->ssl, tmp, sizeof(tmp));
        if (r > 0) {
            rc = hv_buf_append(plain, tmp, (size_t)r);
            if (rc != HV_OK) return rc;
            continue;
        }
        {
            int e = SSL_get_error(t->ssl, r);
            rc = drain(t, net);
            if (rc != HV_OK) return rc;
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return HV_OK;
            if (e == SSL_ERROR_ZERO_RETURN) return HV_ECLOSED;
            ERR_clear_error();
            return HV_EPROTO;
        }
    }
}

int hv__tls_write(hv__tls_t *t, const char *p, size_t n, hv_buf_t *net) {
    while (n > 0) {
        int chunk = n > 16384 ? 16384 : (int)n;
        int r = SSL_write(t->ssl, p, chunk);
        if (r <= 0) {
            ERR_clear_error();
            return HV_EPROTO;
        }
        p += r;
        n -= (size_t)r;
        if (drain(t, net) != HV_OK) return HV_ENOMEM;
    }
    return drain(t, net);
}

int hv__tls_handshake_done(const hv__tls_t *t) { return SSL_is_init_finished(t->ssl); }
