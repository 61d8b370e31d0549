/* The reference for the Postfix throughput benchmark: the smallest libmilter milter, which
 * registers every stage (all but unknown commands) and replies "continue" to each.
 * mailpulse-milter should be no slower.
 * Usage: minimal_milter unix:/path | inet:PORT@HOST */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <sys/stat.h>

static sfsistat Continue(SMFICTX *ctx) { (void)ctx; return SMFIS_CONTINUE; }
static sfsistat Connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
  (void)ctx; (void)host; (void)addr; return SMFIS_CONTINUE;
}
static sfsistat Helo(SMFICTX *ctx, char *helo) { (void)ctx; (void)helo; return SMFIS_CONTINUE; }
static sfsistat Args(SMFICTX *ctx, char **argv) { (void)ctx; (void)argv; return SMFIS_CONTINUE; }
static sfsistat Header(SMFICTX *ctx, char *n, char *v) {
  (void)ctx; (void)n; (void)v; return SMFIS_CONTINUE;
}
static sfsistat Body(SMFICTX *ctx, unsigned char *b, size_t n) {
  (void)ctx; (void)b; (void)n; return SMFIS_CONTINUE;
}

int main(int argc, char **argv) {
  struct smfiDesc desc = {
      "minimal", SMFI_VERSION, 0, Connect, Helo, Args, Args, Header, Continue, Body,
      Continue, Continue, Continue, NULL, Continue, NULL};
  if (argc != 2) {
    fprintf(stderr, "usage: %s SOCKET\n", argv[0]);
    return 2;
  }
  umask(0);
  if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
      smfi_opensocket(1) != MI_SUCCESS) {
    fprintf(stderr, "minimal_milter: cannot listen on %s\n", argv[1]);
    return 1;
  }
  return smfi_main() == MI_SUCCESS ? 0 : 1;
}
