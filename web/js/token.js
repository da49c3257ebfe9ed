// The Token button: a bearer token kept in this tab (sessionStorage), sent by the
// connection as its first message and as `Authorization: Bearer` on the HTTP path.

const TOKEN_KEY = "streamkit.token";
const $ = (selector) => document.querySelector(selector);
const el = {
  box: $("#token-box"),
  summary: $("#token-summary"),
  form: $("#token-form"),
  input: $("#token"),
  clear: $("#token-clear"),
};

/** Wire the token form to `connection`; `onChange()` after a new token, `onError(error)`. */
export function setupToken(connection, { onChange, onError }) {
  const use = (token) => {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
    el.input.value = token ?? "";
    el.summary.textContent = token ? "Token set" : "Token";
    el.box.toggleAttribute("data-signed-in", Boolean(token));
    el.box.open = false;
    connection.setToken(token);
    onChange();
  };
  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    use(el.input.value.trim() || null);
  });
  el.clear.addEventListener("click", () => use(null));
  connection.addEventListener("auth-failed", (event) => {
    onError(event.detail);
    el.box.open = true;
  });
  window.addEventListener("streamkit:error", (event) => {
    if (event.detail.code === "unauthenticated") el.box.open = true;
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  connection.token = saved;
  el.input.value = saved ?? "";
  el.summary.textContent = saved ? "Token set" : "Token";
  el.box.toggleAttribute("data-signed-in", Boolean(saved));
}
