// A real OpenID Connect provider for the sign-in tests: panva's certified oidc-provider
// (clients/package.json pins it), on 127.0.0.1 at a free port, with its development login and
// consent pages (any login; the accounts below give its claims). Prints one JSON line
// {"issuer": …} once it listens; stops on SIGTERM.
//
//   OIDC_CLIENT   {"client_id", "client_secret", "redirect_uris": [...]}
//   OIDC_ACCOUNTS {"<login>": {"email", "email_verified", "name", "groups": [...]}, …}
import http from 'node:http';
import Provider from 'oidc-provider';

const client = JSON.parse(process.env.OIDC_CLIENT);
const accounts = JSON.parse(process.env.OIDC_ACCOUNTS || '{}');

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      ...client,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: client.token_endpoint_auth_method || 'client_secret_basic',
    }],
    pkce: { required: () => true },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // The id_token carries the claims too (not only the userinfo endpoint).
    conformIdTokenClaims: false,
    cookies: { keys: ['oidc-provider test cookies, loopback only'] },
    async findAccount(ctx, sub) {
      const claims = accounts[sub];
      if (!claims) return undefined;
      return { accountId: sub, async claims() { return { sub, ...claims }; } };
    },
  });
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
