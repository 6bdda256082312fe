// tcpload: closed-loop TCP request/response load for netloom's bench harness.
// Each of C connections sends an M-byte message and waits for M bytes back before sending the next,
// for S seconds; prints one JSON line with the message rate and latency percentiles.
// With `ws` last, each connection first opens a WebSocket (the upgrade read whole before the clock starts)
// and the message is an M-byte masked binary frame, its echo the server's unmasked frame.
// Usage: tcpload HOST PORT CONNECTIONS SIZE SECONDS [ws]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LAT_US 1000000

typedef struct {
  int fd;
  size_t to_send;   // bytes of the current message still to write
  size_t to_recv;   // bytes of the echo still to read
  uint64_t started; // ns when the current message began
} conn_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint32_t *hist;

static size_t reply_size; // bytes expected back per message (the message's size, or a WebSocket echo frame)

static int pump(conn_t *c, const char *msg, size_t size, uint64_t *done, uint64_t deadline) {
  char buf[65536];
  for (;;) {
    while (c->to_send > 0) {
      ssize_t n = write(c->fd, msg + (size - c->to_send), c->to_send);
      if (n < 0) {
        if (errno == EAGAIN) break;
        return -1;
      }
      c->to_send -= (size_t)n;
    }
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    if ((size_t)n > c->to_recv) return -1; // the server sent more than it was asked
    c->to_recv -= (size_t)n;
    if (c->to_recv == 0) {
      uint64_t t = now_ns();
      uint64_t us = (t - c->started) / 1000;
      hist[us < MAX_LAT_US ? us : MAX_LAT_US - 1]++;
      (*done)++;
      if (t >= deadline) return 1;
      c->to_send = size;
      c->to_recv = reply_size;
      c->started = t;
    }
  }
}

/** Sends a WebSocket upgrade request on the (blocking) socket and reads the 101 answer to its blank line. */
static int ws_upgrade(int fd, const char *host, int port) {
  char req[512];
  int len = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     host, port);
  if (write(fd, req, (size_t)len) != len) {
    perror("write");
    return -1;
  }
  char last4[4] = {0};
  for (;;) {
    char ch;
    if (read(fd, &ch, 1) != 1) {
      fprintf(stderr, "no upgrade answer\n");
      return -1;
    }
    memmove(last4, last4 + 1, 3);
    last4[3] = ch;
    if (memcmp(last4, "\r\n\r\n", 4) == 0) return 0;
  }
}

int main(int argc, char **argv) {
  if (argc != 6 && !(argc == 7 && strcmp(argv[6], "ws") == 0)) {
    fprintf(stderr, "usage: tcpload HOST PORT CONNECTIONS SIZE SECONDS [ws]\n");
    return 2;
  }
  int ws = argc == 7;
  const char *host = argv[1];
  int port = atoi(argv[2]), nconns = atoi(argv[3]);
  size_t payload = (size_t)atol(argv[4]);
  double seconds = atof(argv[5]);
  size_t size = payload;
  char *msg;
  if (ws) {
    // FIN + binary, the mask bit and length, a mask key, the masked payload; the echo comes unmasked.
    size_t head = payload < 126 ? 2 : 4;
    size = head + 4 + payload;
    unsigned char *frame = malloc(size);
    frame[0] = 0x82;
    if (payload < 126) frame[1] = (unsigned char)(0x80 | payload);
    else {
      frame[1] = 0x80 | 126;
      frame[2] = (unsigned char)(payload >> 8);
      frame[3] = (unsigned char)payload;
    }
    unsigned char key[4] = {0x11, 0x22, 0x33, 0x44};
    memcpy(frame + head, key, 4);
    for (size_t i = 0; i < payload; i++) frame[head + 4 + i] = (unsigned char)('a' + i % 26) ^ key[i & 3];
    msg = (char *)frame;
    reply_size = head + payload;
  } else {
    msg = malloc(size);
    for (size_t i = 0; i < size; i++) msg[i] = (char)('a' + i % 26);
    reply_size = size;
  }
  hist = calloc(MAX_LAT_US, sizeof *hist);
  conn_t *conns = calloc((size_t)nconns, sizeof *conns);
  int ep = epoll_create1(0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  for (int i = 0; i < nconns; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
      perror("connect");
      return 1;
    }
    if (ws && ws_upgrade(fd, host, port) != 0) return 1;
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conns[i].fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = &conns[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  uint64_t start = now_ns(), deadline = start + (uint64_t)(seconds * 1e9), done = 0;
  for (int i = 0; i < nconns; i++) {
    conns[i].to_send = size;
    conns[i].to_recv = reply_size;
    conns[i].started = start;
  }
  int errors = 0, active = nconns;
  struct epoll_event events[256];
  while (active > 0 && now_ns() < deadline) {
    int n = epoll_wait(ep, events, 256, 10);
    for (int i = 0; i < n; i++) {
      conn_t *c = events[i].data.ptr;
      if (c->fd < 0) continue;
      int r = pump(c, msg, size, &done, deadline);
      if (r != 0) {
        if (r < 0) errors++;
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
        active--;
      }
    }
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  uint64_t seen = 0, p50 = 0, p99 = 0;
  for (int us = 0; us < MAX_LAT_US; us++) {
    seen += hist[us];
    if (!p50 && seen * 2 >= done) p50 = (uint64_t)us;
    if (!p99 && seen * 100 >= done * 99) p99 = (uint64_t)us;
  }
  printf("{\"messages\":%llu,\"seconds\":%.3f,\"rate\":%.1f,\"p50_us\":%llu,\"p99_us\":%llu,\"errors\":%d}\n",
         (unsigned long long)done, elapsed, (double)done / elapsed, (unsigned long long)p50,
         (unsigned long long)p99, errors);
  return errors > 0 ? 1 : 0;
}
