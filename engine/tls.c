/*
 * tls.c — TLS for stream protocols on libuv, through OpenSSL memory BIOs.
 *
 * libuv owns the socket; OpenSSL never touches it. Bytes read from the network
 * are written into the read BIO, SSL_read yields plaintext, and whatever
 * OpenSSL wants to send (handshake, records, alerts) is drained from the write
 * BIO and queued on the socket by the caller. The HTTP server, the MLLP
 * listener and the MLLP sender share this. Only TLS 1.2 and 1.3 are accepted
 * (RFC 8996 deprecates the older versions), with forward-secret AEAD ciphers.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <string.h>

struct hv_tls {
    SSL *ssl;
    BIO *rbio; /* network → SSL */
    BIO *wbio; /* SSL → network */
};

static void ssl_error(hv_error_t *err, int code, const char *where, const char *what) {
    char why[256] = "";
    unsigned long e = ERR_get_error();
    if (e != 0) ERR_error_string_n(e, why, sizeof(why));
    ERR_clear_error();
    hv_error_set(err, code, where, "%s%s%s", what, why[0] ? ": " : "", why);
}

static SSL_CTX *ctx_common(const SSL_METHOD *method, hv_error_t *err) {
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (ctx == NULL) {
        ssl_error(err, HV_ENOMEM, NULL, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS");
    return ctx;
}

static int load_pair(SSL_CTX *ctx, const char *cert_file, const char *key_file, hv_error_t *err) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        ssl_error(err, HV_ECONFIG, cert_file, "cannot load the TLS certificate");
        return HV_ECONFIG;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        ssl_error(err, HV_ECONFIG, key_file, "cannot load the TLS key");
        return HV_ECONFIG;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_error(err, HV_ECONFIG, key_file, "the TLS key does not match the certificate");
        return HV_ECONFIG;
    }
    return HV_OK;
}

hv_tls_ctx_t *hv_tls_server_ctx_new(const char *cert_file, const char *key_file,
                                    const char *client_ca, hv_error_t *err) {
    SSL_CTX *ctx = ctx_common(TLS_server_method(), err);
    if (ctx == NULL) return NULL;
    if (load_pair(ctx, cert_file, key_file, err) != HV_OK) goto fail;
    if (client_ca != NULL && client_ca[0] != '\0') {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
        if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1 || names == NULL) {
            ssl_error(err, HV_ECONFIG, client_ca, "cannot load the client CA");
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

hv_tls_ctx_t *hv_tls_client_ctx_new(const char *ca_file, const char *cert_file,
                                    const char *key_file, int verify, hv_error_t *err) {
    SSL_CTX *ctx = ctx_common(TLS_client_method(), err);
    if (ctx == NULL) return NULL;
    if (verify) {
        int ok = ca_file != NULL && ca_file[0] != '\0'
                     ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
        if (ok != 1) {
            ssl_error(err, HV_ECONFIG, ca_file, "cannot load the CA certificates");
            goto fail;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (cert_file != NULL && cert_file[0] != '\0' && load_pair(ctx, cert_file, key_file, err) != HV_OK)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void hv_tls_ctx_free(hv_tls_ctx_t *ctx) {
    if (ctx != NULL) SSL_CTX_free(ctx);
}

hv_tls_t *hv_tls_new(hv_tls_ctx_t *ctx, const char *server_name) {
    hv_tls_t *t = hv_calloc(1, sizeof(*t));
    if (t == NULL) return NULL;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) goto fail;
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL now owns both BIOs */
    t->rbio = t->wbio = NULL;
    if (server_name == NULL) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        SSL_set_tlsext_host_name(t->ssl, server_name);
        if (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
            X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (X509_VERIFY_PARAM_set1_host(vp, server_name, 0) != 1 &&
                X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) != 1)
                goto fail;
        }
    }
    return t;
fail:
    if (t->ssl != NULL) SSL_free(t->ssl);
    BIO_free(t->rbio);
    BIO_free(t->wbio);
    hv_free(t);
    return NULL;
}

void hv_tls_free(hv_tls_t *t) {
    if (t == NULL) return;
    SSL_free(t->ssl);
    hv_free(t);
}

static int drain(hv_tls_t *t, hv_buf_t *net) {
    BIO *wbio = SSL_get_wbio(t->ssl);
    char tmp[16384];
    int n;
    while ((n = BIO_read(wbio, tmp, sizeof(tmp))) > 0) {
        int rc = hv_buf_append(net, tmp, (size_t)n);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

/* Maps an SSL_* result: HV_OK when it only wants more I/O. */
static int result(hv_tls_t *t, int r, hv_buf_t *net) {
    int e = SSL_get_error(t->ssl, r), rc = drain(t, net);
    if (rc != HV_OK) return rc;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return HV_OK;
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? HV_ECLOSED : HV_EPROTO;
}

int hv_tls_connect(hv_tls_t *t, hv_buf_t *net) {
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) return drain(t, net);
    return result(t, r, net);
}

int hv_tls_feed(hv_tls_t *t, const char *in, size_t n, hv_buf_t *plain, hv_buf_t *net) {
    BIO *rbio = SSL_get_rbio(t->ssl);
    char tmp[16384];
    int rc;
    while (n > 0) {
        int w = BIO_write(rbio, in, n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0) return HV_ENOMEM;
        in += w;
        n -= (size_t)w;
    }
    if (!SSL_is_init_finished(t->ssl)) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) return result(t, r, net);
    }
    for (;;) {
        int r = SSL_read(t->ssl, tmp, sizeof(tmp));
        if (r <= 0) return result(t, r, net);
        rc = hv_buf_append(plain, tmp, (size_t)r);
        if (rc != HV_OK) return rc;
    }
}

int hv_tls_write(hv_tls_t *t, const char *p, size_t n, hv_buf_t *net) {
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

int hv_tls_handshake_done(const hv_tls_t *t) { return SSL_is_init_finished(t->ssl); }

void hv_tls_peer_name(const hv_tls_t *t, char *out, size_t outlen) {
    X509 *peer = SSL_get1_peer_certificate(t->ssl);
    if (outlen == 0) return;
    out[0] = '\0';
    if (peer == NULL) return;
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, out, (int)outlen);
    X509_free(peer);
}
