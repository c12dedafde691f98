// Sekimori: the browser half of a WebAuthn ceremony (enrollment or card login). The server
// puts the options, the ceremony token and the CSRF token on #webauthn; this asks the
// authenticator and posts its answer back.
(function () {
  "use strict";
  var root = document.getElementById("webauthn");
  if (!root) { return; }
  var button = document.getElementById("webauthn-start");
  var status = document.getElementById("webauthn-status");

  function toBase64Url(buffer) {
    var bytes = new Uint8Array(buffer);
    var text = "";
    for (var i = 0; i < bytes.length; i++) { text += String.fromCharCode(bytes[i]); }
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function fromBase64Url(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }
  function show(message, isError) {
    status.textContent = message;
    status.setAttribute("role", isError ? "alert" : "status");
    status.className = isError ? "error" : "";
  }

  async function ceremony() {
    var options = JSON.parse(root.dataset.options).publicKey;
    options.challenge = fromBase64Url(options.challenge);
    var credential;
    var answer;
    if (root.dataset.mode === "register") {
      options.user.id = fromBase64Url(options.user.id);
      (options.excludeCredentials || []).forEach(function (c) { c.id = fromBase64Url(c.id); });
      credential = await navigator.credentials.create({ publicKey: options });
      answer = {
        id: credential.id,
        rawId: toBase64Url(credential.rawId),
        type: credential.type,
        response: {
          attestationObject: toBase64Url(credential.response.attestationObject),
          clientDataJSON: toBase64Url(credential.response.clientDataJSON),
          transports: credential.response.getTransports ? credential.response.getTransports() : undefined
        },
        extensions: credential.getClientExtensionResults()
      };
    } else {
      (options.allowCredentials || []).forEach(function (c) { c.id = fromBase64Url(c.id); });
      credential = await navigator.credentials.get({ publicKey: options });
      var r = credential.response;
      answer = {
        id: credential.id,
        rawId: toBase64Url(credential.rawId),
        type: credential.type,
        response: {
          authenticatorData: toBase64Url(r.authenticatorData),
          clientDataJSON: toBase64Url(r.clientDataJSON),
          signature: toBase64Url(r.signature),
          userHandle: r.userHandle ? toBase64Url(r.userHandle) : null
        },
        extensions: credential.getClientExtensionResults()
      };
    }
    var response = await fetch(root.dataset.finish, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ csrf_token: root.dataset.csrf, ceremony: root.dataset.ceremony, credential: answer })
    });
    var body = await response.json().catch(function () { return {}; });
    if (response.ok && body.redirect) {
      window.location.assign(body.redirect);
      return;
    }
    show(body.message || root.dataset.failed, true);
  }

  button.addEventListener("click", function () {
    button.disabled = true;
    show(root.dataset.waiting, false);
    ceremony().catch(function () { show(root.dataset.failed, true); }).finally(function () { button.disabled = false; });
  });
})();
