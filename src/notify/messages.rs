//! The text of each notice: Japanese first, English after, in one message (the person's
//! language is not known when the notice is written, and a mail reader shows both).

/// One thing to tell a person. Names are as the pages show them (system and role labels).
#[derive(Debug, Clone)]
pub enum Notice<'a> {
    /// An approver: a request waits for their decision.
    ApprovalWaiting { requester: &'a str, system: &'a str, role: &'a str, reason: &'a str },
    /// The requester: their request was approved (a grant now holds) or rejected.
    RequestDecided { system: &'a str, role: &'a str, approved: bool, reason: &'a str },
    /// The requester: nobody decided their request in time.
    RequestLapsed { system: &'a str, role: &'a str },
    /// A manager: a review of grants on their systems opened.
    ReviewOpened { scope: &'a str, deadline: &'a str },
    /// The holder: a grant ended (end date, review, revocation, transfer).
    GrantEnded { system: &'a str, role: &'a str, reason: &'a str },
    /// A security manager: one account was locked again and again (R17).
    AccountLockedRepeatedly { login_id: &'a str, lockouts: i64, hours: i64 },
    /// A security manager: one source address was throttled again and again (R17).
    SourceThrottledRepeatedly { source: &'a str, throttles: i64, hours: i64 },
}

impl Notice<'_> {
    /// The kind, as stored and as tests and pages filter by it.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::ApprovalWaiting { .. } => "approval_waiting",
            Notice::RequestDecided { approved: true, .. } => "request_approved",
            Notice::RequestDecided { approved: false, .. } => "request_rejected",
            Notice::RequestLapsed { .. } => "request_lapsed",
            Notice::ReviewOpened { .. } => "review_opened",
            Notice::GrantEnded { .. } => "grant_ended",
            Notice::AccountLockedRepeatedly { .. } => "alert_account_locked",
            Notice::SourceThrottledRepeatedly { .. } => "alert_source_throttled",
        }
    }

    /// Subject and body.
    pub fn render(&self) -> (String, String) {
        match self {
            Notice::ApprovalWaiting { requester, system, role, reason } => (
                format!("【関守】承認待ちの申請があります: {system} / {role}"),
                format!(
                    "{requester} さんから {system} の「{role}」の利用申請が届いています。\n業務上の理由: {reason}\n関守の「承認待ち」の画面で承認または却下してください。\n\n\
                     A request from {requester} for the role \"{role}\" on {system} waits for your decision.\nBusiness reason: {reason}\nApprove or reject it on Sekimori's Approvals page."
                ),
            ),
            Notice::RequestDecided { system, role, approved: true, reason } => (
                format!("【関守】利用申請が承認されました: {system} / {role}"),
                format!(
                    "{system} の「{role}」の利用申請が承認されました。\n{reason}\n\n\
                     Your request for the role \"{role}\" on {system} was approved.\n{reason}"
                ),
            ),
            Notice::RequestDecided { system, role, approved: false, reason } => (
                format!("【関守】利用申請が却下されました: {system} / {role}"),
                format!(
                    "{system} の「{role}」の利用申請は却下されました。\n理由: {reason}\n\n\
                     Your request for the role \"{role}\" on {system} was rejected.\nReason: {reason}"
                ),
            ),
            Notice::RequestLapsed { system, role } => (
                format!("【関守】利用申請が期限切れになりました: {system} / {role}"),
                format!(
                    "{system} の「{role}」の利用申請は、期限までに決裁されなかったため失効しました。必要であれば改めて申請してください。\n\n\
                     Your request for the role \"{role}\" on {system} lapsed: nobody decided it in time. Ask again if you still need it."
                ),
            ),
            Notice::ReviewOpened { scope, deadline } => (
                format!("【関守】利用権限の棚卸しが始まりました: {scope}"),
                format!(
                    "{scope} の利用権限の棚卸しが始まりました。期限 {deadline} までに、関守の「棚卸し」の画面で各権限を継続または削除してください。期限までに確認されなかった権限は失効します。\n\n\
                     A review of the grants on {scope} opened. Confirm or remove each grant on Sekimori's Review page by {deadline}; grants not confirmed by then end."
                ),
            ),
            Notice::GrantEnded { system, role, reason } => (
                format!("【関守】利用権限が終了しました: {system} / {role}"),
                format!(
                    "{system} の「{role}」の利用権限が終了しました（{reason}）。\n\n\
                     Your role \"{role}\" on {system} ended ({reason})."
                ),
            ),
            Notice::AccountLockedRepeatedly { login_id, lockouts, hours } => (
                format!("【関守】異常なアクセスが続いています: アカウント {login_id} のロック"),
                format!(
                    "ログインID {login_id} のアカウントが、{hours} 時間以内に {lockouts} 回ロックされました。パスワードの推測による攻撃が続いているおそれがあります。監査ログで送信元を確認し、必要であれば緊急停止（sekimori emergency-stop）を行ってください。\n\n\
                     The account with login ID {login_id} was locked {lockouts} times within {hours} hours: someone may be guessing its password. Check the sources in the audit log and, if needed, stop it (sekimori emergency-stop)."
                ),
            ),
            Notice::SourceThrottledRepeatedly { source, throttles, hours } => (
                format!("【関守】異常なアクセスが続いています: 送信元 {source} の制限"),
                format!(
                    "送信元アドレス {source} からのログイン失敗が多すぎるため、{hours} 時間以内に {throttles} 回制限しました。複数のアカウントへの攻撃が続いているおそれがあります。監査ログで対象のアカウントを確認してください。\n\n\
                     Logins from the source address {source} were throttled {throttles} times within {hours} hours for too many failures: several accounts may be under attack. Check the audit log for the accounts it tried."
                ),
            ),
        }
    }
}
