// wsfanout: WebSocket broadcast load for netloom's bench harness.
// Opens SUBSCRIBERS WebSockets to ws://HOST:PORT/ (they only read) and one publisher, which sends SIZE-byte
// binary messages (the first 4 bytes a sequence number) with INFLIGHT of them outstanding: a message is
// complete once every subscriber received it, and each completion lets the publisher send the next. Runs for
// SECONDS and prints one JSON line: deliveries per second (messages x subscribers), messages per second, and
// the fan-out latency (publish to the last subscriber's receipt) percentiles.
// Usage: wsfanout HOST PORT SUBSCRIBERS SIZE SECONDS [INFLIGHT]
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LAT_US 10000000
#define RING 1024

typedef struct {
  int fd;
  unsigned char head[14]; // a frame header being read
  int head_len;
  uint64_t payload_left; // payload bytes of the current frame still to come
  uint64_t payload_seen; // payload bytes of the current frame read so far
  uint32_t seq;          // the current frame's sequence number (its first 4 payload bytes)
} sub_t;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ws_upgrade(int fd, const char *host, int port) {
  char req[512];
  int len = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     host, port);
  if (write(fd, req, (size_t)len) != len) return -1;
  char last4[4] = {0};
  for (;;) {
    char ch;
    if (read(fd, &ch, 1) != 1) return -1;
    memmove(last4, last4 + 1, 3);
    last4[3] = ch;
    if (memcmp(last4, "\r\n\r\n", 4) == 0) return 0;
  }
}

static int open_ws(struct sockaddr_in *addr, const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)addr, sizeof *addr) != 0 || ws_upgrade(fd, host, port) != 0) {
    close(fd);
    return -1;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

static uint32_t *hist;
static uint64_t sent_at[RING];
static uint32_t got[RING];
static uint32_t nsubs;
static uint64_t completed, deliveries;

/** A subscriber received all of message `seq`. */
static void delivered(uint32_t seq) {
  deliveries++;
  uint32_t slot = seq % RING;
  if (++got[slot] == nsubs) {
    uint64_t us = (now_ns() - sent_at[slot]) / 1000;
    hist[us < MAX_LAT_US ? us : MAX_LAT_US - 1]++;
    completed++;
  }
}

/**
 * Reads what arrived for `s`; -1 when it closed or sent something that is not a binary frame. One read per
 * readiness unless it filled the buffer (epoll is level-triggered: what is left wakes us again), so the
 * generator spends one syscall per wakeup, not two.
 */
static int drain(sub_t *s) {
  unsigned char buf[65536];
  for (;;) {
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n == 0) return -1;
    if (n < 0) return errno == EAGAIN ? 0 : -1;
    ssize_t p = 0;
    while (p < n) {
      if (s->payload_left == 0 && s->head_len < 2) {
        s->head[s->head_len++] = buf[p++];
        continue;
      }
      if (s->payload_left == 0) {
        int len7 = s->head[1] & 0x7f;
        int need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        if (s->head_len < need) {
          s->head[s->head_len++] = buf[p++];
          if (s->head_len < need) continue;
        }
        if ((s->head[0] & 0x0f) != 0x2) return -1;
        uint64_t len = (uint64_t)len7;
        if (len7 == 126) len = ((uint64_t)s->head[2] << 8) | s->head[3];
        if (len7 == 127) {
          len = 0;
          for (int i = 0; i < 8; i++) len = (len << 8) | s->head[2 + i];
        }
        s->payload_left = len;
        s->payload_seen = 0;
        s->seq = 0;
        s->head_len = 0;
        if (len == 0) return -1;
        continue;
      }
      uint64_t take = (uint64_t)(n - p) < s->payload_left ? (uint64_t)(n - p) : s->payload_left;
      for (uint64_t i = 0; i < take && s->payload_seen + i < 4; i++)
        s->seq = (s->seq << 8) | buf[p + i];
      s->payload_seen += take;
      s->payload_left -= take;
      p += (ssize_t)take;
      if (s->payload_left == 0) delivered(s->seq);
    }
    if ((size_t)n < sizeof buf) return 0;
  }
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) {
    fprintf(stderr, "usage: wsfanout HOST PORT SUBSCRIBERS SIZE SECONDS [INFLIGHT]\n");
    return 2;
  }
  const char *host = argv[1];
  int port = atoi(argv[2]);
  nsubs = (uint32_t)atoi(argv[3]);
  size_t payload = (size_t)atol(argv[4]);
  double seconds = atof(argv[5]);
  uint32_t inflight = argc == 7 ? (uint32_t)atoi(argv[6]) : 4;
  if (payload < 4 || payload > 65535 || inflight < 1 || inflight > RING / 2) {
    fprintf(stderr, "SIZE is 4..65535 bytes, INFLIGHT 1..%d\n", RING / 2);
    return 2;
  }
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  inet_pton(AF_INET, host, &addr.sin_addr);
  sub_t *subs = calloc(nsubs, sizeof *subs);
  int ep = epoll_create1(0);
  for (uint32_t i = 0; i < nsubs; i++) {
    subs[i].fd = open_ws(&addr, host, port);
    if (subs[i].fd < 0) {
      fprintf(stderr, "subscriber %u: connect or upgrade failed: %s\n", i, strerror(errno));
      return 1;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
    epoll_ctl(ep, EPOLL_CTL_ADD, subs[i].fd, &ev);
  }
  int pub = open_ws(&addr, host, port);
  if (pub < 0) {
    fprintf(stderr, "publisher: connect or upgrade failed\n");
    return 1;
  }
  // The publisher's frame: FIN + binary, masked, the sequence number in the first 4 payload bytes.
  size_t head = payload < 126 ? 2 : 4;
  size_t size = head + 4 + payload;
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
  hist = calloc(MAX_LAT_US, sizeof *hist);

  uint32_t next = 0;
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  uint64_t start = now_ns();
  uint64_t deadline = start + (uint64_t)(seconds * 1e9);
  struct epoll_event events[512];
  for (;;) {
    // Keep INFLIGHT messages outstanding.
    while (next - (uint32_t)completed < inflight) {
      for (size_t i = 0; i < payload; i++) {
        unsigned char b = i < 4 ? (unsigned char)(next >> (24 - 8 * i)) : (unsigned char)('a' + i % 26);
        frame[head + 4 + i] = b ^ key[i & 3];
      }
      got[next % RING] = 0;
      sent_at[next % RING] = now_ns();
      size_t off = 0;
      while (off < size) {
        ssize_t n = write(pub, frame + off, size - off);
        if (n < 0 && errno != EAGAIN) {
          perror("publish");
          return 1;
        }
        if (n > 0) off += (size_t)n;
      }
      next++;
    }
    int n = epoll_wait(ep, events, 512, 1000);
    for (int k = 0; k < n; k++) {
      sub_t *s = &subs[events[k].data.u32];
      if (drain(s) < 0) {
        fprintf(stderr, "subscriber %u: closed or a frame that is not a binary message\n", events[k].data.u32);
        return 1;
      }
    }
    if (n == 0) {
      fprintf(stderr, "no delivery for 1 s (completed %llu)\n", (unsigned long long)completed);
      return 1;
    }
    if (now_ns() >= deadline) break;
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  getrusage(RUSAGE_SELF, &ru1);
  // The generator's own CPU share while it measured: near 1.0, it (not the server) was the limit.
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
  uint64_t total = 0, p50 = 0, p99 = 0, acc = 0;
  for (int i = 0; i < MAX_LAT_US; i++) total += hist[i];
  for (int i = 0; i < MAX_LAT_US; i++) {
    acc += hist[i];
    if (!p50 && acc * 2 >= total) p50 = (uint64_t)i;
    if (!p99 && acc * 100 >= total * 99) {
      p99 = (uint64_t)i;
      break;
    }
  }
  printf("{\"rate\":%.0f,\"messages\":%.0f,\"p50_us\":%llu,\"p99_us\":%llu,\"subscribers\":%u,"
         "\"client_cpu\":%.2f}\n",
         (double)deliveries / elapsed, (double)completed / elapsed, (unsigned long long)p50,
         (unsigned long long)p99, nsubs, cpu / elapsed);
  return 0;
}
