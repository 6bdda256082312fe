// The echo handler every loop imports: whatever arrives goes straight back, in the same turn.
import type { EventHandler } from 'netloom';

const echo: EventHandler = {
  onTraffic(conn) {
    conn.write(conn.next());
  },
};

export default echo;
