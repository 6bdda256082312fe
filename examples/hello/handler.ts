// The hello handler every loop imports: GET / -> "Hello, World!", GET /json -> {"message":"Hello, World!"}.
import { server } from 'netloom/http1';

const messageSchema = {
  type: 'object',
  properties: { message: { type: 'string' } },
  required: ['message'],
} as const;

export default server((req, res) => {
  const path = req.path;
  if (path === '/') {
    res.header('content-type', 'text/plain').end('Hello, World!');
  } else if (path === '/json') {
    res.json({ message: 'Hello, World!' }, messageSchema);
  } else {
    res.status(404).header('content-type', 'text/plain').end('Not Found');
  }
});
