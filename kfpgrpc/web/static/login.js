// The login form's one script (served without a token, like the form): it keeps the link the
// user opened. The fragment ("#/runs/<id>?task=x") never reaches the server, so it is put on
// the form's action; the server's 303 to /ui/ has no fragment of its own, and a browser then
// keeps the request's (Fetch: a redirect inherits the fragment), landing on the same view.

const form = document.querySelector("form[action='/ui/login']");
if (form && location.hash.startsWith("#/")) form.setAttribute("action", "/ui/login" + location.hash);
