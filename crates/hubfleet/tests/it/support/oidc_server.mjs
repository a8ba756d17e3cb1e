// The real npm `oidc-provider` (9.13.3) for hubfleet's end-to-end login tests
// (crates/hubfleet/tests/it/support/oidc.rs starts it).
//
// Environment: PORT (listen on 127.0.0.1:PORT; the issuer is http://127.0.0.1:PORT),
// REDIRECT_URI (the hub's /hub/oauth_callback), ACCOUNTS (JSON: account id -> extra claims, e.g.
// {"groups": [...]} or, imitating CILogon, {"idp": ..., "eppn": ...}),
// ACCESS_TOKEN_TTL (seconds, default 3600).
// Test-only addition: GET /test/access_tokens lists the access tokens issued so far.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const accounts = JSON.parse(process.env.ACCOUNTS || '{}');
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || 3600);
const issued = [];

const oidc = new Provider(issuer, {
  clients: [{
    client_id: 'hub',
    client_secret: 'hubsecret',
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.org`, preferred_username: id, groups: [], ...(accounts[id] || {}) };
      },
    };
  },
  claims: {
    openid: ['sub'], email: ['email'], profile: ['preferred_username'], groups: ['groups', 'roles'],
    'org.cilogon.userinfo': ['idp', 'eppn'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access', 'org.cilogon.userinfo'],
  ttl: { AccessToken: accessTokenTtl },
});

// Opaque access tokens are stored under their value (the jti) and announce it as `saved`.
oidc.on('access_token.saved', (token) => { issued.push(token.jti); });
oidc.on('access_token.issued', (token) => { issued.push(token.jti); });
oidc.use(async (ctx, next) => {
  if (ctx.path === '/test/access_tokens') {
    ctx.body = issued;
    return;
  }
  await next();
});

// Show provider-side failures in the test's log.
oidc.on('server_error', (ctx, err) => { console.log('server_error', err); });

oidc.listen(port, '127.0.0.1', () => { console.log(`oidc-provider listening on ${issuer}`); });
