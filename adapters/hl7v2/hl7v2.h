/*
 * hl7v2.h — the HL7 v2 adapter: parser and serializer (v2.1–v2.8), escapes,
 * MSH-18 character sets, batches, path access, acknowledgements, MLLP framing,
 * the MLLP listener and sender, and the inbound message store.
 *
 * The parser does not copy: a parsed message is an array of segment spans that
 * point into the received bytes (or into one UTF-8 copy of them when MSH-18 names
 * another character set). Fields, repetitions, components and subcomponents are
 * found on demand by scanning a segment, which is faster than building a tree for
 * the common case of reading a handful of fields (MSH, PID-3, OBX-5).
 *
 * Spans are raw, i.e. still escaped (HL7 v2.5.1 §2.7); hv_hl7v2_unescape turns one
 * into text. A modified segment is re-serialized into the message's arena; every
 * other byte of the message is written back exactly as received.
 */
#ifndef HV_ADAPTERS_HL7V2_H
#define HV_ADAPTERS_HL7V2_H

#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------- */
/* Messages                                                                  */
/* ------------------------------------------------------------------------- */

/* A run of bytes in some buffer; `p` is NULL when the item is absent. */
typedef struct hv_hl7v2_span {
    const char *p;
    size_t len;
} hv_hl7v2_span_t;

/*
 * The delimiters of a message (HL7 v2.5.1 §2.5.4, v2.7 §2.5.5.2 for the
 * truncation character). A character that the message does not declare is 0.
 */
typedef struct hv_hl7v2_delims {
    char field; /* MSH-1, usually '|' */
    char comp;  /* '^' */
    char rep;   /* '~' */
    char esc;   /* '\\' */
    char sub;   /* '&' */
    char trunc; /* '#' (v2.7+), or 0 */
} hv_hl7v2_delims_t;

/* One segment: its text without terminator, and the terminator bytes that followed it. */
typedef struct hv_hl7v2_seg {
    const char *p;
    size_t len;
    const char *term; /* the CR/LF run after the segment as received ("" for the last) */
    size_t term_len;
    char id[4];       /* "PID", NUL-terminated */
} hv_hl7v2_seg_t;

typedef struct hv_hl7v2_msg {
    hv_arena_t *arena;        /* borrowed: where this message's allocations live */
    const char *raw;          /* the bytes as received (borrowed) */
    size_t raw_len;
    const char *text;         /* what the spans point into: raw, or its UTF-8 conversion */
    size_t text_len;
    size_t prefix_len;        /* bytes before MSH in text (a UTF-8 byte order mark) */
    hv_hl7v2_delims_t delims;
    hv_hl7v2_seg_t *segs;     /* arena */
    size_t nsegs;
    char charset[32];         /* MSH-18 first repetition as written, "" if empty */
    const char *iconv_name;   /* iconv name of the source charset; NULL when text == raw */
    int modified;             /* a segment was replaced since parsing */
} hv_hl7v2_msg_t;

/* Caps and choices for parsing. hv_hl7v2_parse_opts_default fills the defaults. */
typedef struct hv_hl7v2_parse_opts {
    size_t max_segments;    /* default 100000 */
    size_t max_bytes;       /* default 16 MiB */
    int strict_escapes;     /* reject unknown or unterminated escape sequences (default 1) */
    int convert_charset;    /* convert MSH-18 character sets to UTF-8 (default 1) */
} hv_hl7v2_parse_opts_t;

void hv_hl7v2_parse_opts_default(hv_hl7v2_parse_opts_t *o);

/*
 * Codes of HL7 table 0357 (message error condition codes), used in ERR-3 and in
 * hv_error_t.code of parse errors so that an ACK can say exactly what failed.
 */
enum hv_hl7v2_err_code {
    HV_HL7V2_E_OK = 0,
    HV_HL7V2_E_SEGMENT_SEQUENCE = 100,
    HV_HL7V2_E_REQUIRED_MISSING = 101,
    HV_HL7V2_E_DATA_TYPE = 102,
    HV_HL7V2_E_TABLE_VALUE = 103,
    HV_HL7V2_E_VALUE_TOO_LONG = 104,
    HV_HL7V2_E_UNSUPPORTED_MSG_TYPE = 200,
    HV_HL7V2_E_UNSUPPORTED_EVENT = 201,
    HV_HL7V2_E_UNSUPPORTED_PROC_ID = 202,
    HV_HL7V2_E_UNSUPPORTED_VERSION = 203,
    HV_HL7V2_E_UNKNOWN_KEY = 204,
    HV_HL7V2_E_DUPLICATE_KEY = 205,
    HV_HL7V2_E_RECORD_LOCKED = 206,
    HV_HL7V2_E_INTERNAL = 207
};
/* The table 0357 text for a code ("Required field missing"); "" if unknown. */
const char *hv_hl7v2_err_text(int code);

/*
 * Parses one message (MSH first; a leading UTF-8 BOM and blank lines are kept as a
 * prefix). Segments may end with CR, LF or CRLF. The message borrows `raw`, which
 * must outlive it; anything allocated goes to `arena`. On failure returns
 * HV_EPROTO (or HV_ETOOBIG, HV_ENOTSUP for an unknown MSH-18, HV_ENOMEM) and fills
 * err: err->code is HV_EPROTO etc., err->line the 1-based segment number,
 * err->column the 1-based byte in it, err->location "SEG-F" when known, and
 * err->message says what; *hl7_code (may be NULL) receives the table 0357 code.
 */
int hv_hl7v2_parse(hv_arena_t *arena, const char *raw, size_t len,
                   const hv_hl7v2_parse_opts_t *opts, hv_hl7v2_msg_t *out, hv_error_t *err,
                   int *hl7_code);

/*
 * Reads the delimiters from the start of an MSH, FHS or BHS segment. Returns
 * HV_EPROTO when they are missing, repeated or unusable (CR, LF, alphanumeric).
 */
int hv_hl7v2_delims_read(const char *p, size_t len, hv_hl7v2_delims_t *out, hv_error_t *err);

/* ------------------------------------------------------------------------- */
/* Path access                                                               */
/* ------------------------------------------------------------------------- */

/*
 * A location in a message: "PID-3[2].1", "OBX[3]-5.1", "MSH-9.2", "ZPI-1.2.1".
 * Segment occurrence, field, repetition, component, subcomponent are 1-based;
 * occurrence and repetition default to 1; comp/sub of 0 mean "the whole".
 */
typedef struct hv_hl7v2_path {
    char seg[4];
    unsigned occ, field, rep, comp, sub;
} hv_hl7v2_path_t;

int hv_hl7v2_path_parse(const char *s, hv_hl7v2_path_t *out);
/* Formats a path back ("PID[1]-3[2].1" keeps only the parts that are set). */
void hv_hl7v2_path_format(const hv_hl7v2_path_t *p, char *out, size_t outlen);

/*
 * The raw (escaped) span at a path. HV_ENOTFOUND when the segment or any level is
 * absent; an item that is present but empty yields HV_OK with len 0. For MSH-1 the
 * span is the field separator itself and for MSH-2 the encoding characters.
 */
int hv_hl7v2_get(const hv_hl7v2_msg_t *m, const char *path, hv_hl7v2_span_t *out);
int hv_hl7v2_get_path(const hv_hl7v2_msg_t *m, const hv_hl7v2_path_t *path, hv_hl7v2_span_t *out);
/* The unescaped text at a path, NUL-terminated, from the message's arena. */
int hv_hl7v2_get_text(const hv_hl7v2_msg_t *m, const char *path, char **out, size_t *len);
/* The number of occurrences of a segment id. */
size_t hv_hl7v2_seg_count(const hv_hl7v2_msg_t *m, const char *id);
/* True when a raw field value is the explicit null `""` (HL7 v2.5.1 §2.5.3). */
int hv_hl7v2_span_is_null(hv_hl7v2_span_t s);
/*
 * Splits a raw span by a delimiter: the piece at 0-based index i. Absent pieces
 * give HV_ENOTFOUND. Used to walk repetitions, components and subcomponents.
 */
int hv_hl7v2_span_piece(hv_hl7v2_span_t s, char sep, size_t i, hv_hl7v2_span_t *out);
size_t hv_hl7v2_span_count(hv_hl7v2_span_t s, char sep);

/*
 * Replaces the item at a path with `value` (text, escaped here), creating empty
 * fields, repetitions, components and subcomponents as needed. The segment must
 * exist. MSH-1 and MSH-2 cannot be set.
 */
int hv_hl7v2_set_text(hv_hl7v2_msg_t *m, const char *path, const char *value, size_t len);

/* ------------------------------------------------------------------------- */
/* Escapes (HL7 v2.5.1 §2.7)                                                 */
/* ------------------------------------------------------------------------- */

/*
 * Decodes a raw span into text: \F\ \S\ \T\ \R\ \E\ \P\ become the delimiters,
 * \Xhh…\ the bytes, \.br\ a line feed; \H\ \N\ and other formatting commands
 * (\.sp\ \.in\ …, \Cxxyy\ \Mxxyyzz\, \Zxx\) are dropped. An unknown or unterminated
 * sequence is HV_EPROTO when strict, else it is kept literally. Output goes to a
 * buffer (appended).
 */
int hv_hl7v2_unescape(const hv_hl7v2_delims_t *d, const char *p, size_t n, int strict,
                      hv_buf_t *out);
/*
 * Encodes text for a field: the delimiters become \F\ \S\ \T\ \R\ \E\ \P\, CR and LF
 * become \X0D\ and \X0A\, so that unescape(escape(s)) == s for any bytes.
 */
int hv_hl7v2_escape(const hv_hl7v2_delims_t *d, const char *p, size_t n, hv_buf_t *out);
/* Checks every escape sequence of a segment; HV_EPROTO with the column of the bad one. */
int hv_hl7v2_escape_check(const hv_hl7v2_delims_t *d, const char *p, size_t n, size_t *bad_at);

/* ------------------------------------------------------------------------- */
/* Character sets (MSH-18, HL7 table 0211)                                   */
/* ------------------------------------------------------------------------- */

/*
 * Maps an MSH-18 value to an iconv name: "" → NULL (no declaration), "ASCII" →
 * "ASCII", "8859/1" … "8859/15" → "ISO-8859-n", "UNICODE UTF-8" → "UTF-8",
 * "ISO IR100" → "ISO-8859-1", "ISO IR6" → "ASCII"; "UTF-8" (seen in the wild) is
 * taken as "UNICODE UTF-8"; case is ignored. HV_ENOTSUP for others.
 */
int hv_hl7v2_charset_iconv_name(const char *msh18, size_t n, const char **out);
/* Converts between two iconv charsets; output appended to out. HV_EPROTO on invalid input. */
int hv_hl7v2_charset_convert(const char *from, const char *to, const char *p, size_t n,
                             hv_buf_t *out);
/* True when p is valid UTF-8 (RFC 3629). */
int hv_hl7v2_utf8_valid(const char *p, size_t n);

/* ------------------------------------------------------------------------- */
/* Serializer                                                                */
/* ------------------------------------------------------------------------- */

/*
 * Writes the message as it would go on the wire: prefix, each segment followed by
 * its terminator as received (segments added or changed get CR), converted back to
 * the MSH-18 character set. For an unmodified message the output equals the input
 * byte for byte.
 */
int hv_hl7v2_serialize(const hv_hl7v2_msg_t *m, hv_buf_t *out);

/* Writes the message as a JSON tree (segments → fields → repetitions → components → subcomponents). */
int hv_hl7v2_to_json(const hv_hl7v2_msg_t *m, hv_buf_t *out);

/* ------------------------------------------------------------------------- */
/* Batches (HL7 v2.5.1 §2.10.3: FHS/BHS … BTS/FTS)                           */
/* ------------------------------------------------------------------------- */

/*
 * Splits a file or batch into its messages: the span of each message starts at
 * its MSH and runs to the next MSH, BHS, BTS, FHS or FTS segment. A plain message
 * (no batch envelope) gives one span. Headers are checked: at most one FHS and
 * only first, no BHS inside an open batch, no segment outside a message; an error
 * is HV_EPROTO with err naming the segment number. Missing or unpaired trailers
 * (BTS, FTS) are tolerated, as common readers do. At most `max`
 * messages (HV_ETOOBIG beyond). *out is an arena array of *count spans.
 */
int hv_hl7v2_batch_split(hv_arena_t *arena, const char *p, size_t n, size_t max,
                         hv_hl7v2_span_t **out, size_t *count, hv_error_t *err);

/* ------------------------------------------------------------------------- */
/* Acknowledgements (HL7 v2.5.1 §2.9, §2.14.1 MSA, §2.14.5 ERR)              */
/* ------------------------------------------------------------------------- */

enum hv_hl7v2_ack_code { HV_HL7V2_ACK_ACCEPT = 0, HV_HL7V2_ACK_ERROR = 1, HV_HL7V2_ACK_REJECT = 2 };
enum hv_hl7v2_severity { HV_HL7V2_SEV_ERROR = 0, HV_HL7V2_SEV_WARNING = 1, HV_HL7V2_SEV_INFO = 2 };

/* One ERR segment: location as a path ("PID-3[2].1" or "PID" or ""), table 0357 code, severity, text. */
typedef struct hv_hl7v2_ack_err {
    const char *location;
    int code;
    int severity;
    const char *message;
} hv_hl7v2_ack_err_t;

typedef struct hv_hl7v2_ack_opts {
    int code;                        /* HV_HL7V2_ACK_* */
    const hv_hl7v2_ack_err_t *errs;  /* may be NULL */
    size_t nerrs;
    const char *control_id;          /* MSH-10 of the ACK; NULL makes one from time and a counter */
    uint64_t now_ms;                 /* MSH-7; 0 means now */
} hv_hl7v2_ack_opts_t;

/*
 * Which acknowledgement the receiver of `m` owes (HL7 v2.5.1 §2.9.2, §2.9.3):
 * original mode when MSH-15 and MSH-16 are both empty (AA/AE/AR), else enhanced
 * mode where the engine, having stored the message, sends the accept
 * acknowledgement (CA/CE/CR) as MSH-15 asks (AL always, NE never, ER only on
 * error, SU only on success; empty means AL).
 */
int hv_hl7v2_ack_is_enhanced(const hv_hl7v2_msg_t *m);
int hv_hl7v2_ack_wanted(const hv_hl7v2_msg_t *m, int code);

/*
 * Builds the ACK for a parsed message into out (CR-terminated segments, no MLLP
 * framing): MSH with sender and receiver swapped, the same delimiters, version
 * and processing id, MSH-9 ACK^<trigger>^ACK; MSA-1 code, MSA-2 the received
 * MSH-10; one ERR per error. `m` may be a message that failed to parse past its
 * MSH (hv_hl7v2_msh_peek fills one), or NULL for a default MSH.
 */
int hv_hl7v2_ack_build(const hv_hl7v2_msg_t *m, const hv_hl7v2_ack_opts_t *o, hv_buf_t *out);

/*
 * Parses only the MSH segment of raw bytes, leniently, so that a message whose
 * body is broken still gets an ACK naming its control id. out->nsegs is 1.
 */
int hv_hl7v2_msh_peek(hv_arena_t *arena, const char *raw, size_t len, hv_hl7v2_msg_t *out);

/* The MSA-1 code of an ACK message ("AA", …) into out[3]; HV_EPROTO if it is not an ACK. */
int hv_hl7v2_ack_read(const char *raw, size_t len, char out[3], hv_hl7v2_span_t *control_id);

/* ------------------------------------------------------------------------- */
/* MLLP framing (MLLP release 2: VT, message, FS, CR)                       */
/* ------------------------------------------------------------------------- */

#define HV_MLLP_SB 0x0b
#define HV_MLLP_EB 0x1c
#define HV_MLLP_CR 0x0d

typedef struct hv_mllp_framer {
    int state;
    size_t max;      /* largest message accepted, bytes */
    hv_buf_t buf;    /* a message that spans reads is collected here */
    uint64_t frames; /* frames returned so far */
} hv_mllp_framer_t;

void hv_mllp_framer_init(hv_mllp_framer_t *f, size_t max);
void hv_mllp_framer_release(hv_mllp_framer_t *f);
/*
 * Feeds bytes. Consumes up to n bytes and sets *used; when a complete frame has
 * been read returns HV_OK with *msg and *msg_len pointing at its content (into p when
 * the frame was whole in this input, else into the framer's buffer), valid until
 * the next call. Returns HV_AGAIN when all input was consumed without completing a
 * frame; HV_ETOOBIG when a frame exceeds max; HV_EPROTO on bytes outside a frame
 * (whitespace between frames is allowed) or an <FS> not followed by <CR>.
 * After an error the framer must be released.
 */
int hv_mllp_framer_feed(hv_mllp_framer_t *f, const char *p, size_t n, size_t *used,
                        const char **msg, size_t *msg_len);
/* True when the framer holds part of a frame. */
int hv_mllp_framer_partial(const hv_mllp_framer_t *f);
/* Appends <VT> p <FS><CR> to out. */
int hv_mllp_wrap(const char *p, size_t n, hv_buf_t *out);

/* ------------------------------------------------------------------------- */
/* MLLP sender (client)                                                      */
/* ------------------------------------------------------------------------- */

/*
 * Sends messages to one peer over MLLP, one at a time, in order: connects (and
 * reconnects with exponential backoff), writes a frame, waits for the ACK whose
 * MSA-2 is the message's MSH-10 (ack_timeout_ms), and reports the outcome:
 * AA/CA → delivered; AE/CE → retry (the peer could not process it now);
 * AR/CR → error (the peer refuses it: do not resend). A connect failure, a lost
 * connection or an ACK timeout resends the same message after the backoff, up to
 * max_attempts (then the outcome is retry with status HV_ETIMEDOUT or HV_EIO).
 * A message with MSH-15 NE is delivered once written (no ACK is expected: the
 * callback gets ack NULL); with MSH-15 ER an ACK timeout means delivered.
 */
enum hv_mllp_outcome { HV_MLLP_DELIVERED = 0, HV_MLLP_RETRY = 1, HV_MLLP_ERROR = 2 };

typedef struct hv_mllp_sender hv_mllp_sender_t;

typedef struct hv_mllp_sender_opts {
    const char *host;             /* name or address */
    int port;
    uint64_t connect_timeout_ms;  /* default 10 s */
    uint64_t ack_timeout_ms;      /* default 30 s */
    uint64_t backoff_min_ms;      /* default 200 ms */
    uint64_t backoff_max_ms;      /* default 30 s */
    int max_attempts;             /* default 5 */
    size_t max_message;           /* largest ACK accepted; default 1 MiB */
    /*
     * MLLP over TLS (tls set): the TLS handshake runs after each connect and
     * before the first frame, within connect_timeout_ms; a failed handshake is a
     * transport failure (retried with backoff like a refused connection).
     */
    int tls;
    const char *tls_ca_file;      /* CA certificates (PEM) for the server; NULL: system store */
    int tls_insecure;             /* 1: do not verify the server's certificate (default: verify) */
    const char *tls_cert_file;    /* client certificate (PEM) for mutual TLS, with tls_key_file */
    const char *tls_key_file;
    const char *tls_server_name;  /* SNI and the name checked in the certificate; NULL: host */
} hv_mllp_sender_opts_t;

/*
 * Called once per message on the loop thread: status HV_OK when an ACK came
 * (outcome from MSA-1, ack/ack_len its bytes, valid during the call), else the
 * transport error after the last attempt (outcome HV_MLLP_RETRY, ack NULL).
 */
typedef void (*hv_mllp_sent_cb)(int status, int outcome, const char *ack, size_t ack_len,
                                void *ud);

/* HV_EINVAL for a bad host/port, HV_ECONFIG when the TLS files cannot be loaded (err says
 * why; err may be NULL). The option strings are copied. */
int hv_mllp_sender_new(uv_loop_t *loop, const hv_mllp_sender_opts_t *o, hv_mllp_sender_t **out,
                       hv_error_t *err);
/* Queues a message (copied). HV_EINVAL when it has no readable MSH-10. */
int hv_mllp_sender_send(hv_mllp_sender_t *s, const char *msg, size_t len, hv_mllp_sent_cb cb,
                        void *ud);
size_t hv_mllp_sender_queued(const hv_mllp_sender_t *s);
/* Why the last connection attempt failed, in words ("" when none failed): for messages to
 * users, e.g. "TLS handshake failed: certificate verify failed: …". */
const char *hv_mllp_sender_last_error(const hv_mllp_sender_t *s);
/*
 * Closes the connection and frees the sender once its handles have closed (run the
 * loop). Messages still queued are reported with HV_ECLOSED. NULL is a no-op.
 */
void hv_mllp_sender_free(hv_mllp_sender_t *s);

/* ------------------------------------------------------------------------- */
/* The module                                                                */
/* ------------------------------------------------------------------------- */

extern const hv_module_t hv_hl7v2_module;
/* Registers the mllp source, mllp-send destination and hl7v2 filter paths with the
 * channel runtime (channel.c); listed in modules.c before hv_channels_module. */
extern const hv_module_t hv_hl7v2_channels_module;

#ifdef __cplusplus
}
#endif
#endif /* HV_ADAPTERS_HL7V2_H */
