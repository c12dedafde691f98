// Sekimori lost-card hotline page: calls the admin API with the operator's token (kept only
// in this tab's memory) and renders what comes back with textContent, never as HTML.
(function () {
  "use strict";
  var status = document.getElementById("status");
  var results = document.getElementById("results");
  var template = document.getElementById("report-template");

  function say(text, isError) {
    status.textContent = text;
    status.setAttribute("role", isError ? "alert" : "status");
    status.className = isError ? "error" : "";
  }
  function token() { return document.getElementById("api-token").value.trim(); }
  async function call(method, path, body) {
    var response = await fetch(path, {
      method: method,
      headers: Object.assign({ "Authorization": "Bearer " + token() }, body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined
    });
    var data = await response.json().catch(function () { return {}; });
    if (!response.ok) { throw new Error((data.detail || data.title || response.status) + ""); }
    return data;
  }
  function el(tag, text) { var e = document.createElement(tag); if (text !== undefined) { e.textContent = text; } return e; }
  function when(t) { return t ? new Date(t * 1000).toLocaleString("ja-JP") : "—"; }

  // quiet: keep the status as it is (after a stop, its confirmation must stay to be heard).
  function render(items, quiet) {
    results.replaceChildren();
    if (items.length === 0) { if (!quiet) { say("該当する職員はいません。 (No one found.)", false); } return; }
    if (!quiet) { say(items.length + " 人見つかりました。 (" + items.length + " found.)", false); }
    items.forEach(function (person) {
      var section = el("section");
      var heading = el("h2", person.name + "（" + person.name_kana + "） 職員番号 " + person.employee_number +
        (person.login_id ? " ログインID " + person.login_id : ""));
      section.appendChild(heading);
      if (person.org_unit) { section.appendChild(el("p", person.org_unit)); }
      if (person.authenticators.length === 0) {
        section.appendChild(el("p", "登録されたカードはありません。 (No cards.)"));
      }
      var list = el("ul");
      person.authenticators.forEach(function (card) {
        var item = el("li");
        var active = card.status === "active";
        item.appendChild(el("strong", card.label));
        item.appendChild(el("span", " 管理番号 " + (card.management_number || "—") + " / 登録 " + when(card.created_at) +
          " / 最終使用 " + when(card.last_used_at) + " / " + (active ? "使用中 (in use)" : "停止済み (stopped)") +
          (card.loss_reference ? " / 受付番号 (reference) " + card.loss_reference : "")));
        if (active) {
          var form = template.content.firstElementChild.cloneNode(true);
          form.setAttribute("aria-label", card.label + " の紛失届 (report " + card.label + " lost)");
          form.addEventListener("submit", function (event) {
            event.preventDefault();
            var data = new FormData(form);
            say("停止しています… (Stopping…)", false);
            call("POST", "/api/v1/authenticators/" + encodeURIComponent(card.id) + "/lost",
              { reported_by: data.get("reported_by"), reason: data.get("reason") })
              .then(function (answer) {
                // The reference number is what the operator reads to the caller: it leads.
                if (answer.already_reported) {
                  say("このカードは既に停止されています。受付番号 " + answer.loss_reference +
                    " をお伝えください。 (Already reported: reference " + answer.loss_reference + ".)", false);
                } else {
                  say("停止しました。受付番号 " + answer.loss_reference + " をお伝えください。終了したログイン " +
                    answer.sessions_ended + " 件、無効にしたトークン " +
                    (answer.access_tokens_revoked + answer.refresh_tokens_revoked) + " 件。 (Stopped: reference " +
                    answer.loss_reference + ".)", false);
                }
                // The form is about to go: keep the keyboard on the confirmation, not on <body>.
                status.focus();
                search(true);
              })
              .catch(function (e) { say("停止できませんでした: " + e.message + " (Could not stop the card.)", true); });
          });
          item.appendChild(form);
        }
        list.appendChild(item);
      });
      section.appendChild(list);
      results.appendChild(section);
    });
  }

  function search(quiet) {
    var q = document.getElementById("q").value.trim();
    if (!q || !token()) { say("トークンと検索語を入力してください。 (Enter the token and a search term.)", true); return; }
    call("GET", "/api/v1/hotline/people?q=" + encodeURIComponent(q))
      .then(function (data) { render(data.items, quiet === true); })
      .catch(function (e) { say("検索できませんでした: " + e.message + " (Search failed.)", true); });
  }
  status.setAttribute("tabindex", "-1");
  document.getElementById("search-form").addEventListener("submit", function (event) { event.preventDefault(); search(false); });
  document.getElementById("token-form").addEventListener("submit", function (event) { event.preventDefault(); });
})();
