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
    TooManyAttempts,
    Busy,
    ChangePasswordTitle,
    PasswordExpiredLead,
    ResetLead,
    CurrentPassword,
    NewPassword,
    ConfirmPassword,
    PasswordRules,
    ChangeButton,
    PasswordChanged,
    PasswordChangedLogIn,
    TicketInvalid,
    CurrentPasswordWrong,
    ExpiresSoonTitle,
    ContinueButton,
    ChangeNowLink,
    LogoutConfirmTitle,
    LogoutConfirmLead,
    LogoutFrom,
    StayLoggedIn,
    BadLogoutRequest,
    BadPostLogoutRedirectUri,
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
            (LoginFailed, Ja) => "ログインIDまたはパスワードが正しくありません。続けて間違えると、しばらくログインできなくなります。",
            (LoginFailed, En) => "The login ID or password is incorrect. After repeated mistakes, logging in is blocked for a while.",
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
            (TooManyAttempts, Ja) => "失敗が続いたため、この端末からのログインを一時的に止めています。しばらく待ってからやり直してください。",
            (TooManyAttempts, En) => "Too many failed attempts from this device. Please wait a while and try again.",
            (Busy, Ja) => "ただいま混み合っています。少し待ってからやり直してください。",
            (Busy, En) => "The service is busy. Please try again in a moment.",
            (ChangePasswordTitle, Ja) => "パスワードの変更",
            (ChangePasswordTitle, En) => "Change your password",
            (PasswordExpiredLead, Ja) => "パスワードの有効期限が切れたか、変更が求められています。新しいパスワードを設定するとログインが完了します。",
            (PasswordExpiredLead, En) => "Your password has expired or must be changed. Set a new one to finish logging in.",
            (ResetLead, Ja) => "管理者が発行したリンクから、新しいパスワードを設定します。",
            (ResetLead, En) => "Set a new password with the link your administrator issued.",
            (CurrentPassword, Ja) => "現在のパスワード",
            (CurrentPassword, En) => "Current password",
            (NewPassword, Ja) => "新しいパスワード",
            (NewPassword, En) => "New password",
            (ConfirmPassword, Ja) => "新しいパスワード（確認）",
            (ConfirmPassword, En) => "New password (again)",
            (PasswordRules, Ja) => "12文字以上にしてください。氏名・職員番号・生年月日・ログインIDを含むもの、以前使ったもの、ほかの人と同じものは使えません。単語を組み合わせた長いパスフレーズがおすすめです。",
            (PasswordRules, En) => "Use at least 12 characters. Passwords containing your name, employee number, birth date or login ID, ones you used before, and ones someone else uses are refused. A long passphrase of several words works well.",
            (ChangeButton, Ja) => "変更する",
            (ChangeButton, En) => "Change password",
            (PasswordChanged, Ja) => "パスワードを変更しました。ほかの端末でのログインは終了しました。",
            (PasswordChanged, En) => "Your password has been changed. Your sessions on other devices have ended.",
            (PasswordChangedLogIn, Ja) => "パスワードを設定しました。利用するシステムから、新しいパスワードでログインしてください。",
            (PasswordChangedLogIn, En) => "Your password is set. Log in from the system you want to use with your new password.",
            (TicketInvalid, Ja) => "このリンクは無効か、有効期限が切れています。管理者に新しいリンクを依頼してください。",
            (TicketInvalid, En) => "This link is invalid or has expired. Please ask your administrator for a new one.",
            (CurrentPasswordWrong, Ja) => "現在のパスワードが正しくありません。",
            (CurrentPasswordWrong, En) => "The current password is incorrect.",
            (ExpiresSoonTitle, Ja) => "パスワードの有効期限が近づいています",
            (ExpiresSoonTitle, En) => "Your password expires soon",
            (ContinueButton, Ja) => "変更せずに続ける",
            (ContinueButton, En) => "Continue without changing",
            (ChangeNowLink, Ja) => "今すぐ変更する",
            (ChangeNowLink, En) => "Change it now",
            (LogoutConfirmTitle, Ja) => "ログアウトの確認",
            (LogoutConfirmTitle, En) => "Log out?",
            (LogoutConfirmLead, Ja) => "関守からログアウトしますか。関守でログインしているすべてのシステムからログアウトします。",
            (LogoutConfirmLead, En) => "Log out of Sekimori? You will be logged out of every system you signed in to through Sekimori.",
            (LogoutFrom, Ja) => "ログアウトを求めたシステム",
            (LogoutFrom, En) => "Requested by",
            (StayLoggedIn, Ja) => "ログアウトしない",
            (StayLoggedIn, En) => "Stay logged in",
            (BadLogoutRequest, Ja) => "ログアウトの要求が正しくないため、処理を中止しました。システムの管理者に連絡してください。",
            (BadLogoutRequest, En) => "The logout request is not valid, so it was stopped. Please contact the system's administrator.",
            (BadPostLogoutRedirectUri, Ja) => "ログアウト後の戻り先が登録と一致しないため、処理を中止しました。システムの管理者に連絡してください。",
            (BadPostLogoutRedirectUri, En) => "The address to return to after logout does not match the registration, so the logout was stopped. Please contact the system's administrator.",
        }
    }
}
