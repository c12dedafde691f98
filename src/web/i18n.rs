//! Japanese first, English available. Every text a page shows is here, in both languages.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }
    pub fn other(self) -> Lang {
        match self {
            Lang::Ja => Lang::En,
            Lang::En => Lang::Ja,
        }
    }
    /// The language's own name, for the switch link.
    pub fn name(self) -> &'static str {
        match self {
            Lang::Ja => "日本語",
            Lang::En => "English",
        }
    }
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
    /// `msg` in this language (for templates).
    pub fn t(self, msg: Msg) -> &'static str {
        msg.text(self)
    }

    /// First supported tag of a space-separated `ui_locales` list (OIDC Core §3.1.2.1).
    pub fn from_ui_locales(list: &str) -> Option<Lang> {
        list.split(' ').find_map(Lang::parse)
    }
}

/// Every message a page can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg {
    AppName,
    LoginTitle,
    LoginLead,
    LoginId,
    Password,
    LoginButton,
    LoginFailed,
    LoginFor,
    BadClient,
    BadRedirectUri,
    LoginRequestExpired,
    CsrfFailed,
    BadForm,
    InternalError,
    ErrorTitle,
    LoggedInAs,
    LogoutButton,
    LoggedOut,
    NotLoggedIn,
    GoToLogin,
    SkipToContent,
    SwitchLanguage,
}

impl Msg {
    pub fn text(self, lang: Lang) -> &'static str {
        use Lang::*;
        use Msg::*;
        match (self, lang) {
            (AppName, Ja) => "関守 統合認証",
            (AppName, En) => "Sekimori single sign-on",
            (LoginTitle, Ja) => "ログイン",
            (LoginTitle, En) => "Log in",
            (LoginLead, Ja) => "職員のログインIDとパスワードを入力してください。",
            (LoginLead, En) => "Enter your staff login ID and password.",
            (LoginId, Ja) => "ログインID",
            (LoginId, En) => "Login ID",
            (Password, Ja) => "パスワード",
            (Password, En) => "Password",
            (LoginButton, Ja) => "ログイン",
            (LoginButton, En) => "Log in",
            (LoginFailed, Ja) => "ログインIDまたはパスワードが正しくありません。",
            (LoginFailed, En) => "The login ID or password is incorrect.",
            (LoginFor, Ja) => "ログイン先のシステム",
            (LoginFor, En) => "You are logging in to",
            (BadClient, Ja) => "ログインを依頼したシステムが登録されていないか、利用停止中です。システムの管理者に連絡してください。",
            (BadClient, En) => "The system that sent you here is not registered or is disabled. Please contact its administrator.",
            (BadRedirectUri, Ja) => "ログイン後の戻り先が登録と一致しないため、処理を中止しました。システムの管理者に連絡してください。",
            (BadRedirectUri, En) => "The return address does not match the registration, so the login was stopped. Please contact the system's administrator.",
            (LoginRequestExpired, Ja) => "ログインの有効期限が切れました。利用するシステムからもう一度ログインしてください。",
            (LoginRequestExpired, En) => "This login has expired. Please start again from the system you want to use.",
            (CsrfFailed, Ja) => "フォームの有効期限が切れたか、不正な送信です。ページを再読み込みしてやり直してください。",
            (CsrfFailed, En) => "The form has expired or was not sent from this page. Please reload the page and try again.",
            (BadForm, Ja) => "送信内容が正しくありません。",
            (BadForm, En) => "The form was not filled in correctly.",
            (InternalError, Ja) => "内部エラーが発生しました。しばらくしてからやり直してください。",
            (InternalError, En) => "An internal error occurred. Please try again later.",
            (ErrorTitle, Ja) => "エラー",
            (ErrorTitle, En) => "Error",
            (LoggedInAs, Ja) => "ログイン中の職員",
            (LoggedInAs, En) => "Logged in as",
            (LogoutButton, Ja) => "ログアウト",
            (LogoutButton, En) => "Log out",
            (LoggedOut, Ja) => "ログアウトしました。",
            (LoggedOut, En) => "You have logged out.",
            (NotLoggedIn, Ja) => "ログインしていません。",
            (NotLoggedIn, En) => "You are not logged in.",
            (GoToLogin, Ja) => "ログインする",
            (GoToLogin, En) => "Log in",
            (SkipToContent, Ja) => "本文へ移動",
            (SkipToContent, En) => "Skip to main content",
            (SwitchLanguage, Ja) => "言語を切り替える",
            (SwitchLanguage, En) => "Change language",
        }
    }
}
