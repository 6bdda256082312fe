// idleconns: opens connections to an HTTP server, sends one keep-alive GET on each and reads its response,
// then holds every connection open (idle) until stdin closes or a line arrives, for netloom's `idle` bench.
// Connections are spread over the source addresses 127.0.0.1 .. 127.0.0.K so the count can pass one
// address's ephemeral port range. After each batch it prints `open N` (N connections answered and idle).
// With --ws first, each connection opens a WebSocket instead (the upgrade request, its 101 answer read).
// Usage: idleconns [--ws] PORT SOURCES BATCH [BATCH ...]   e.g. idleconns 8080 4 4000 12000
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char GET[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
static const char UPGRADE[] = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

// Reads one response with a Content-Length body; 0 on success.
static int read_response(int fd) {
  char buf[4096];
  size_t have = 0;
  for (;;) {
    ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
    if (n <= 0) return -1;
    have += (size_t)n;
    buf[have] = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (end == NULL) {
      if (have >= sizeof buf - 1) return -1;
      continue;
    }
    char *cl = strcasestr(buf, "content-length:");
    size_t body = cl != NULL && cl < end ? (size_t)strtoul(cl + 15, NULL, 10) : 0;
    if (have >= (size_t)(end + 4 - buf) + body) return 0;
  }
}

int main(int argc, char **argv) {
  const char *request = GET;
  size_t request_len = sizeof GET - 1;
  if (argc > 1 && strcmp(argv[1], "--ws") == 0) {
    request = UPGRADE;
    request_len = sizeof UPGRADE - 1;
    argv++;
    argc--;
  }
  if (argc < 4) {
    fprintf(stderr, "usage: idleconns [--ws] PORT SOURCES BATCH [BATCH ...]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  int sources = atoi(argv[2]);
  int total = 0;
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int b = 3; b < argc; b++) {
    int batch = atoi(argv[b]);
    for (int i = 0; i < batch; i++) {
      int fd = socket(AF_INET, SOCK_STREAM, 0);
      if (fd < 0) {
        perror("socket");
        return 1;
      }
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = 0};
      src.sin_addr.s_addr = htonl(0x7f000001 + (uint32_t)(total % sources));
      if (bind(fd, (struct sockaddr *)&src, sizeof src) != 0) {
        perror("bind");
        return 1;
      }
      struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
      dst.sin_addr.s_addr = htonl(0x7f000001);
      if (connect(fd, (struct sockaddr *)&dst, sizeof dst) != 0) {
        perror("connect");
        return 1;
      }
      if (write(fd, request, request_len) != (ssize_t)request_len || read_response(fd) != 0) {
        fprintf(stderr, "connection %d: no response\n", total);
        return 1;
      }
      total++;
    }
    printf("open %d\n", total);
  }
  // Hold everything until told to stop (a line or EOF on stdin).
  char line[16];
  if (fgets(line, sizeof line, stdin) == NULL) return 0;
  return 0;
}
