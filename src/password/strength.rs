//! The strength policy with personal context (江戸川区 情報管理安全対策基準 第11条1(2)): a
//! password must not be an easily guessed string such as the employee number or birth date.
//!
//! Pure and synchronous. [`check`] gives every reason for refusal at once: length out of
//! bounds, personal information found in the password (login ID, employee number, name in
//! kanji, kana or romaji, section, birth date in Western and Japanese-era forms), and a zxcvbn
//! score below the policy's minimum with the same personal words as user inputs. Each refusal
//! says why and what would be better, in Japanese and English, and never echoes the secret.

use time::{Date, Month};
use zxcvbn::feedback::{Feedback, Suggestion, Warning};

/// Passwords longer than this are refused outright (`too_long`).
pub const MAX_LENGTH: usize = 256;

/// What Sekimori knows about the person, used as context for the strength check.
#[derive(Clone, Copy)]
pub struct PersonalContext<'a> {
    pub login_id: &'a str,
    pub employee_number: &'a str,
    /// Kanji, e.g. 田中.
    pub family_name: &'a str,
    /// Kanji, e.g. 健一.
    pub given_name: &'a str,
    /// Katakana or hiragana, e.g. タナカ.
    pub family_name_kana: &'a str,
    /// Katakana or hiragana, e.g. ケンイチ.
    pub given_name_kana: &'a str,
    pub birth_date: Option<Date>,
    /// E.g. 税務課.
    pub org_unit_name: Option<&'a str>,
    /// The section's code, usually its name in romaji (e.g. ZEIMU).
    pub org_unit_code: Option<&'a str>,
    /// The section's English name (e.g. Taxation Division); its distinctive words count.
    pub org_unit_name_en: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrengthPolicy {
    /// Minimum length in Unicode characters.
    pub min_length: usize,
    /// Minimum zxcvbn score, 0..=4 (values above 4 count as 4).
    pub min_score: u8,
}

impl Default for StrengthPolicy {
    fn default() -> Self {
        Self { min_length: 12, min_score: 3 }
    }
}

/// One reason for refusal, with a message in Japanese and English and a suggestion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `too_short`, `too_long`, `contains_personal_info` or `too_weak`.
    pub code: &'static str,
    pub ja: String,
    pub en: String,
}

/// Checks `password` against the policy, with what is known about the person as context.
pub fn check(policy: &StrengthPolicy, password: &str, ctx: &PersonalContext) -> Result<(), Vec<Refusal>> {
    check_with_extra_words(policy, password, ctx, &[])
}

/// [`check`], with further words about the person (an English section name, a nickname…)
/// that are refused like the rest of the context.
pub fn check_with_extra_words(
    policy: &StrengthPolicy,
    password: &str,
    ctx: &PersonalContext,
    extra_words: &[&str],
) -> Result<(), Vec<Refusal>> {
    let length = password.chars().count();
    if length > MAX_LENGTH {
        return Err(vec![Refusal {
            code: "too_long",
            ja: format!("パスワードが長すぎます。{MAX_LENGTH}文字以内にしてください。"),
            en: format!("The password is too long. Use at most {MAX_LENGTH} characters."),
        }]);
    }
    let mut refusals = Vec::new();
    if length < policy.min_length {
        let min = policy.min_length;
        refusals.push(Refusal {
            code: "too_short",
            ja: format!("パスワードが短すぎます。{min}文字以上必要です。"),
            en: format!("The password is too short: at least {min} characters are required."),
        });
    }
    let entries = context_entries(ctx, extra_words);
    let folded = nfkc(password);
    // Personal words are looked for as typed, in leetspeak (k3n1ch1) and reversed (ihcinek):
    // the substitutions zxcvbn applies to its own dictionaries.
    let lowered: Vec<char> = folded.to_lowercase().chars().collect();
    let reversed: Vec<char> = lowered.iter().rev().copied().collect();
    let mut kinds: Vec<Kind> = entries
        .iter()
        .filter(|(kind, word)| {
            let word: Vec<char> = word.chars().collect();
            word.len() >= kind.min_chars(&word)
                && (contains_disguised(&lowered, &word) || contains_disguised(&reversed, &word))
        })
        .map(|(kind, _)| *kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    refusals.extend(kinds.into_iter().map(Kind::refusal));

    let inputs: Vec<&str> = entries.iter().map(|(_, word)| word.as_str()).collect();
    let entropy = zxcvbn::zxcvbn(&folded, &inputs);
    if u8::from(entropy.score()) < policy.min_score.min(4) {
        refusals.push(too_weak(entropy.feedback()));
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

/// Every word derived from the context (lower-cased, full-width ASCII folded), without
/// duplicates: what the substring rule and zxcvbn look for.
pub fn context_words(ctx: &PersonalContext) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for (_, word) in context_entries(ctx, &[]) {
        if !words.contains(&word) {
            words.push(word);
        }
    }
    words
}

/// The kind of personal information a context word is, named in the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    LoginId,
    EmployeeNumber,
    Name,
    BirthDate,
    Section,
    Other,
}

impl Kind {
    /// How long a word must be to be refused as a substring: numbers and dates are specific
    /// from three digits, other Latin words from four letters, kanji and kana from two.
    fn min_chars(self, word: &[char]) -> usize {
        match self {
            Kind::EmployeeNumber | Kind::BirthDate => 3,
            _ if word.iter().all(char::is_ascii) => 4,
            _ => 2,
        }
    }

    fn refusal(self) -> Refusal {
        let (ja, en) = match self {
            Kind::LoginId => ("ログインIDが含まれています。", "contains your login ID"),
            Kind::EmployeeNumber => ("職員番号が含まれています。", "contains your employee number"),
            Kind::Name => (
                "氏名が含まれています（漢字・かな・ローマ字のいずれも対象です）。",
                "contains your name (in kanji, kana or romaji)",
            ),
            Kind::BirthDate => (
                "誕生日が含まれています（西暦・和暦のどの書き方も対象です）。",
                "contains your birth date (in any Western or Japanese-era form)",
            ),
            Kind::Section => ("所属名が含まれています。", "contains your section name"),
            Kind::Other => ("あなたに関する情報が含まれています。", "contains information about you"),
        };
        Refusal { code: "contains_personal_info", ja: ja.to_owned(), en: format!("The password {en}.") }
    }
}

fn too_weak(feedback: Option<&Feedback>) -> Refusal {
    let mut ja = String::from("推測されやすいパスワードです。");
    let mut en = String::from("The password is too easy to guess.");
    if let Some(feedback) = feedback {
        if let Some(warning) = feedback.warning() {
            ja.push_str(warning_ja(warning));
            en.push_str(&format!(" {warning}"));
        }
        for suggestion in feedback.suggestions() {
            ja.push_str(suggestion_ja(*suggestion));
            en.push_str(&format!(" {suggestion}"));
        }
    }
    Refusal { code: "too_weak", ja, en }
}

/// The one closing advice for a list of refusals: said once, after them, however many there
/// are (each refusal says only what is wrong).
pub fn advice(refusals: &[Refusal]) -> Option<(String, String)> {
    if refusals.iter().all(|r| r.code == "too_long") {
        return None;
    }
    Some(if refusals.iter().any(|r| r.code == "contains_personal_info") {
        (
            "本人に関する情報は推測されやすいため使えません。あなたと関係のない単語をいくつか組み合わせた長いパスフレーズにしてください。".into(),
            "Information about you is easy to guess: use a long passphrase of several words that have nothing to do with you.".into(),
        )
    } else {
        (
            "単語をいくつか組み合わせた長いパスフレーズにしてください。".into(),
            "Use a long passphrase made of several words.".into(),
        )
    })
}

fn warning_ja(warning: Warning) -> &'static str {
    use Warning as W;
    match warning {
        W::StraightRowsOfKeysAreEasyToGuess => "キーボードの並びどおりの文字列は推測されやすいです。",
        W::ShortKeyboardPatternsAreEasyToGuess => "短いキーボードのパターンは推測されやすいです。",
        W::RepeatsLikeAaaAreEasyToGuess => "「aaa」のような繰り返しは推測されやすいです。",
        W::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess => {
            "「abcabcabc」のような繰り返しは「abc」とほとんど変わりません。"
        }
        W::ThisIsATop10Password | W::ThisIsATop100Password | W::ThisIsACommonPassword => {
            "よく使われているパスワードです。"
        }
        W::ThisIsSimilarToACommonlyUsedPassword => "よく使われているパスワードに似ています。",
        W::SequencesLikeAbcAreEasyToGuess => "「abc」や「6543」のような連続は推測されやすいです。",
        W::RecentYearsAreEasyToGuess => "最近の年は推測されやすいです。",
        W::AWordByItselfIsEasyToGuess => "単語ひとつだけでは推測されやすいです。",
        W::DatesAreOftenEasyToGuess => "日付は推測されやすいです。",
        W::NamesAndSurnamesByThemselvesAreEasyToGuess | W::CommonNamesAndSurnamesAreEasyToGuess => {
            "人の名前は推測されやすいです。"
        }
    }
}

fn suggestion_ja(suggestion: Suggestion) -> &'static str {
    use Suggestion as S;
    match suggestion {
        S::UseAFewWordsAvoidCommonPhrases => "よくある言い回しを避け、いくつかの単語を組み合わせてください。",
        S::NoNeedForSymbolsDigitsOrUppercaseLetters => "記号・数字・大文字を無理に入れる必要はありません。",
        S::AddAnotherWordOrTwo => "単語をもう1つか2つ加えてください。珍しい単語ほど効果的です。",
        S::CapitalizationDoesntHelpVeryMuch => "大文字にしてもあまり強くなりません。",
        S::AllUppercaseIsAlmostAsEasyToGuessAsAllLowercase => {
            "すべて大文字にしても、すべて小文字とほとんど変わりません。"
        }
        S::ReversedWordsArentMuchHarderToGuess => "単語を逆さにしても推測の難しさはあまり変わりません。",
        S::PredictableSubstitutionsDontHelpVeryMuch => "「a」を「@」にするような置き換えはあまり効果がありません。",
        S::UseALongerKeyboardPatternWithMoreTurns => "キーボードのパターンは、より長く曲がりの多いものにしてください。",
        S::AvoidRepeatedWordsAndCharacters => "同じ単語や文字の繰り返しは避けてください。",
        S::AvoidSequences => "連続した文字や数字は避けてください。",
        S::AvoidRecentYears => "最近の年は避けてください。",
        S::AvoidYearsThatAreAssociatedWithYou => "あなたに関係のある年は避けてください。",
        S::AvoidDatesAndYearsThatAreAssociatedWithYou => "あなたに関係のある日付や年は避けてください。",
    }
}

/// NFKC: full-width Latin letters and digits (Ａ, ０) to ASCII, half-width katakana (ｹﾝｲﾁ) to
/// katakana, the ideographic space to a space — so that a word is found however it was typed.
fn nfkc(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfkc().collect()
}

/// The letters a character may stand for in leetspeak (zxcvbn's table).
fn leet_letters(c: char) -> &'static [char] {
    match c {
        '4' | '@' => &['a'],
        '8' => &['b'],
        '(' | '{' | '[' | '<' => &['c'],
        '3' => &['e'],
        '6' | '9' => &['g'],
        '1' | '|' => &['i', 'l'],
        '!' => &['i'],
        '7' => &['l', 't'],
        '0' => &['o'],
        '$' | '5' => &['s'],
        '+' => &['t'],
        '%' => &['x'],
        '2' => &['z'],
        _ => &[],
    }
}

/// Whether `word` occurs in `text`, each character either as itself or as a leetspeak stand-in.
fn contains_disguised(text: &[char], word: &[char]) -> bool {
    if word.is_empty() || word.len() > text.len() {
        return false;
    }
    text.windows(word.len()).any(|window| window.iter().zip(word).all(|(t, w)| t == w || leet_letters(*t).contains(w)))
}

fn normalise(text: &str) -> String {
    nfkc(text).chars().filter(|c| !c.is_whitespace()).collect::<String>().to_lowercase()
}

struct Entries(Vec<(Kind, String)>);

impl Entries {
    fn add(&mut self, kind: Kind, word: &str) {
        let word = normalise(word);
        if !word.is_empty() && !self.0.iter().any(|(k, w)| *k == kind && *w == word) {
            self.0.push((kind, word));
        }
    }
}

fn context_entries(ctx: &PersonalContext, extra_words: &[&str]) -> Vec<(Kind, String)> {
    let mut entries = Entries(Vec::new());
    entries.add(Kind::LoginId, ctx.login_id);
    for part in ctx.login_id.split(['.', '_', '-', '@']) {
        entries.add(Kind::LoginId, part);
    }
    let number = normalise(ctx.employee_number);
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    for word in [number.as_str(), number.trim_start_matches('0'), &digits, digits.trim_start_matches('0')] {
        entries.add(Kind::EmployeeNumber, word);
    }
    if let Some(date) = ctx.birth_date {
        for form in date_forms(date) {
            entries.add(Kind::BirthDate, &form);
        }
    }
    let family = name_forms(ctx.family_name, ctx.family_name_kana);
    let given = name_forms(ctx.given_name, ctx.given_name_kana);
    for word in family.iter().chain(&given) {
        entries.add(Kind::Name, word);
    }
    for f in &family {
        for g in &given {
            entries.add(Kind::Name, &format!("{f}{g}"));
            entries.add(Kind::Name, &format!("{g}{f}"));
        }
    }
    if let Some(section) = ctx.org_unit_name {
        entries.add(Kind::Section, section);
        for suffix in ["課", "係", "部", "室", "局", "センター", "事務所"] {
            if let Some(stem) = section.trim().strip_suffix(suffix) {
                entries.add(Kind::Section, stem);
            }
        }
    }
    if let Some(code) = ctx.org_unit_code {
        entries.add(Kind::Section, code);
        for part in code.split(|c: char| !c.is_alphanumeric()) {
            entries.add(Kind::Section, part);
        }
    }
    if let Some(name_en) = ctx.org_unit_name_en {
        // Words every section name has say nothing about this one.
        const GENERIC: [&str; 12] = [
            "division",
            "section",
            "department",
            "office",
            "unit",
            "bureau",
            "center",
            "centre",
            "team",
            "group",
            "branch",
            "affairs",
        ];
        for word in name_en.split(|c: char| !c.is_alphanumeric()) {
            if !GENERIC.contains(&word.to_lowercase().as_str()) {
                entries.add(Kind::Section, word);
            }
        }
    }
    for word in extra_words {
        entries.add(Kind::Other, word);
    }
    entries.0
}

/// The name as written, in katakana and hiragana, and in romaji.
fn name_forms(kanji: &str, kana: &str) -> Vec<String> {
    let kana = normalise(kana);
    let mut forms =
        vec![normalise(kanji), kana.chars().map(to_katakana).collect(), kana.chars().map(to_hiragana).collect()];
    forms.extend(romaji(&kana));
    forms.retain(|f| !f.is_empty());
    forms.dedup();
    forms
}

/// The birth date in every common Western and Japanese-era form, lower-case.
fn date_forms(date: Date) -> Vec<String> {
    let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
    let (y4, y2) = (format!("{year:04}"), format!("{:02}", year.rem_euclid(100)));
    let months = [format!("{month:02}"), month.to_string()];
    let days = [format!("{day:02}"), day.to_string()];
    let mut forms = vec![y4.clone()];
    for m in &months {
        for d in &days {
            forms.extend([format!("{m}{d}"), format!("{m}月{d}日"), format!("{y4}年{m}月{d}日")]);
            for y in [&y4, &y2] {
                forms.extend([format!("{y}{m}{d}"), format!("{d}{m}{y}"), format!("{m}{d}{y}")]);
            }
            for sep in ["-", "/", "."] {
                forms.extend([
                    format!("{y4}{sep}{m}{sep}{d}"),
                    format!("{d}{sep}{m}{sep}{y4}"),
                    format!("{m}{sep}{d}{sep}{y4}"),
                ]);
            }
        }
    }
    if let Some((kanji, letter, era_year)) = era(date) {
        let era_years = [format!("{era_year:02}"), era_year.to_string()];
        let mut kanji_years = era_years.to_vec();
        if era_year == 1 {
            kanji_years.push("元".into());
        }
        for y in &kanji_years {
            forms.push(format!("{kanji}{y}年"));
        }
        for (m, d) in months.iter().flat_map(|m| days.iter().map(move |d| (m, d))) {
            for y in &kanji_years {
                forms.push(format!("{kanji}{y}年{m}月{d}日"));
            }
            for y in &era_years {
                for sep in ["", ".", "/", "-"] {
                    forms.push(format!("{letter}{y}{sep}{m}{sep}{d}"));
                }
            }
        }
        forms.push(format!("{era_year:02}{month:02}{day:02}"));
    }
    forms.retain(|f| f.chars().count() >= 3);
    forms
}

/// The Japanese era of a date: its name, its initial and the year within it (元年 = 1).
fn era(date: Date) -> Option<(&'static str, char, i32)> {
    const ERAS: [(i32, Month, u8, &str, char); 3] = [
        (2019, Month::May, 1, "令和", 'r'),
        (1989, Month::January, 8, "平成", 'h'),
        (1926, Month::December, 25, "昭和", 's'),
    ];
    for (year, month, day, kanji, letter) in ERAS {
        if date >= Date::from_calendar_date(year, month, day).ok()? {
            return Some((kanji, letter, date.year() - year + 1));
        }
    }
    None
}

fn to_katakana(c: char) -> char {
    match c {
        '\u{3041}'..='\u{3096}' => char::from_u32(u32::from(c) + 0x60).unwrap_or(c),
        _ => c,
    }
}

fn to_hiragana(c: char) -> char {
    match c {
        '\u{30A1}'..='\u{30F6}' => char::from_u32(u32::from(c) - 0x60).unwrap_or(c),
        _ => c,
    }
}

/// Katakana to (Hepburn, Kunrei/wāpuro) romaji, one mora at a time.
#[rustfmt::skip]
const KANA: &[(char, &str, &str)] = &[
    ('ア', "a", "a"), ('イ', "i", "i"), ('ウ', "u", "u"), ('エ', "e", "e"), ('オ', "o", "o"),
    ('カ', "ka", "ka"), ('キ', "ki", "ki"), ('ク', "ku", "ku"), ('ケ', "ke", "ke"), ('コ', "ko", "ko"),
    ('ガ', "ga", "ga"), ('ギ', "gi", "gi"), ('グ', "gu", "gu"), ('ゲ', "ge", "ge"), ('ゴ', "go", "go"),
    ('サ', "sa", "sa"), ('シ', "shi", "si"), ('ス', "su", "su"), ('セ', "se", "se"), ('ソ', "so", "so"),
    ('ザ', "za", "za"), ('ジ', "ji", "zi"), ('ズ', "zu", "zu"), ('ゼ', "ze", "ze"), ('ゾ', "zo", "zo"),
    ('タ', "ta", "ta"), ('チ', "chi", "ti"), ('ツ', "tsu", "tu"), ('テ', "te", "te"), ('ト', "to", "to"),
    ('ダ', "da", "da"), ('ヂ', "ji", "di"), ('ヅ', "zu", "du"), ('デ', "de", "de"), ('ド', "do", "do"),
    ('ナ', "na", "na"), ('ニ', "ni", "ni"), ('ヌ', "nu", "nu"), ('ネ', "ne", "ne"), ('ノ', "no", "no"),
    ('ハ', "ha", "ha"), ('ヒ', "hi", "hi"), ('フ', "fu", "hu"), ('ヘ', "he", "he"), ('ホ', "ho", "ho"),
    ('バ', "ba", "ba"), ('ビ', "bi", "bi"), ('ブ', "bu", "bu"), ('ベ', "be", "be"), ('ボ', "bo", "bo"),
    ('パ', "pa", "pa"), ('ピ', "pi", "pi"), ('プ', "pu", "pu"), ('ペ', "pe", "pe"), ('ポ', "po", "po"),
    ('マ', "ma", "ma"), ('ミ', "mi", "mi"), ('ム', "mu", "mu"), ('メ', "me", "me"), ('モ', "mo", "mo"),
    ('ヤ', "ya", "ya"), ('ユ', "yu", "yu"), ('ヨ', "yo", "yo"), ('ワ', "wa", "wa"), ('ヲ', "o", "wo"),
    ('ラ', "ra", "ra"), ('リ', "ri", "ri"), ('ル', "ru", "ru"), ('レ', "re", "re"), ('ロ', "ro", "ro"),
    ('ヰ', "i", "i"), ('ヱ', "e", "e"), ('ヴ', "vu", "vu"), ('ヮ', "wa", "wa"), ('ァ', "a", "a"),
    ('ィ', "i", "i"), ('ゥ', "u", "u"), ('ェ', "e", "e"), ('ォ', "o", "o"), ('ャ', "ya", "ya"),
    ('ュ', "yu", "yu"), ('ョ', "yo", "yo"),
];

enum Mora {
    Syllable(String, String),
    Sokuon,
    N,
    Long,
}

#[derive(Clone, Copy, PartialEq)]
enum LongVowel {
    Full,
    Short,
    Oh,
}

fn tokenise(kana: &str) -> Option<Vec<Mora>> {
    let lookup = |c: char| KANA.iter().find(|(k, _, _)| *k == c).map(|(_, h, k)| (*h, *k));
    let mut morae = Vec::new();
    let mut chars = kana.chars().map(to_katakana).peekable();
    while let Some(c) = chars.next() {
        let mora = match c {
            'ッ' => Mora::Sokuon,
            'ン' => Mora::N,
            'ー' => Mora::Long,
            _ => {
                let (hep, kun) = lookup(c)?;
                let vowel = chars.peek().and_then(|n| lookup(*n)).and_then(|(h, _)| h.chars().last());
                match (chars.peek(), vowel) {
                    (Some('ャ' | 'ュ' | 'ョ'), Some(v)) if hep.len() > 1 && hep.ends_with('i') => {
                        chars.next();
                        let stem = hep.strip_suffix('i').unwrap_or(hep);
                        let glide = if stem.ends_with('h') || stem == "j" { "" } else { "y" };
                        Mora::Syllable(
                            format!("{stem}{glide}{v}"),
                            format!("{}y{v}", kun.strip_suffix('i').unwrap_or(kun)),
                        )
                    }
                    (Some('ァ' | 'ィ' | 'ゥ' | 'ェ' | 'ォ'), Some(v)) if hep.len() > 1 || c == 'ウ' => {
                        chars.next();
                        let stem =
                            if c == 'ウ' { "w" } else { hep.strip_suffix(['a', 'i', 'u', 'e', 'o']).unwrap_or(hep) };
                        Mora::Syllable(format!("{stem}{v}"), format!("{stem}{v}"))
                    }
                    _ => Mora::Syllable(hep.into(), kun.into()),
                }
            }
        };
        morae.push(mora);
    }
    Some(morae)
}

fn spelling(mora: Option<&Mora>, kunrei: bool) -> Option<&str> {
    match mora {
        Some(Mora::Syllable(h, k)) => Some(if kunrei { k.as_str() } else { h.as_str() }),
        _ => None,
    }
}

fn romanise(morae: &[Mora], kunrei: bool, labial_m: bool, long: LongVowel) -> String {
    let mut out = String::new();
    let mut sokuon = false;
    for (i, mora) in morae.iter().enumerate() {
        let previous = spelling(i.checked_sub(1).and_then(|j| morae.get(j)), kunrei);
        let last = out.chars().last();
        let lengthens = |vowel: &str| {
            previous.is_some()
                && ((vowel == "u" && matches!(last, Some('o' | 'u'))) || (vowel == "o" && last == Some('o')))
        };
        match mora {
            Mora::Sokuon => sokuon = true,
            Mora::N => {
                let before_labial = spelling(morae.get(i + 1), kunrei).is_some_and(|n| n.starts_with(['b', 'm', 'p']));
                out.push(if labial_m && before_labial { 'm' } else { 'n' });
            }
            Mora::Long | Mora::Syllable(..) => {
                let text = match spelling(Some(mora), kunrei) {
                    Some(text) => text.to_string(),
                    None => last.filter(|c| "aiueo".contains(*c)).map(String::from).unwrap_or_default(),
                };
                if matches!(mora, Mora::Long) || lengthens(&text) {
                    match long {
                        LongVowel::Full => out.push_str(&text),
                        LongVowel::Oh if last == Some('o') => out.push('h'),
                        LongVowel::Oh => out.push_str(&text),
                        LongVowel::Short => {}
                    }
                    continue;
                }
                if std::mem::take(&mut sokuon) {
                    match text.chars().next() {
                        Some(_) if !kunrei && text.starts_with("ch") => out.push('t'),
                        Some(c) if !"aiueo".contains(c) => out.push(c),
                        _ => {}
                    }
                }
                out.push_str(&text);
            }
        }
    }
    out
}

/// Romaji readings of kana: Hepburn (with n or m before b, m, p) and Kunrei/wāpuro, each with
/// long vowels written out (satou, koohii), dropped (sato, kohi) or as "oh" (satoh).
/// Empty when the text is not all kana.
fn romaji(kana: &str) -> Vec<String> {
    let Some(morae) = tokenise(kana) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for (kunrei, labial_m) in [(false, false), (false, true), (true, false)] {
        for long in [LongVowel::Full, LongVowel::Short, LongVowel::Oh] {
            let word = romanise(&morae, kunrei, labial_m, long);
            if !word.is_empty() && !out.contains(&word) {
                out.push(word);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn tanaka() -> PersonalContext<'static> {
        PersonalContext {
            login_id: "k.tanaka",
            employee_number: "E012345",
            family_name: "田中",
            given_name: "健一",
            family_name_kana: "タナカ",
            given_name_kana: "けんいち",
            birth_date: Some(date!(1990 - 05 - 12)),
            org_unit_name: Some("税務課"),
            org_unit_code: Some("ZEIMU"),
            org_unit_name_en: Some("Taxation Division"),
        }
    }

    fn refusals(password: &str, ctx: &PersonalContext) -> Vec<Refusal> {
        check(&StrengthPolicy::default(), password, ctx).err().unwrap_or_default()
    }

    /// The English messages of the `contains_personal_info` refusals.
    fn personal(password: &str, ctx: &PersonalContext) -> Vec<String> {
        refusals(password, ctx).into_iter().filter(|r| r.code == "contains_personal_info").map(|r| r.en).collect()
    }

    fn assert_found(password: &str, ctx: &PersonalContext, what: &str) {
        let found = personal(password, ctx);
        assert!(found.iter().any(|en| en.contains(what)), "{password:?} should be refused for {what}: {found:?}");
    }

    #[test]
    fn romaji_conversion() {
        let cases: &[(&str, &[&str])] = &[
            ("タナカ", &["tanaka"]),
            ("ケンイチ", &["kenichi", "keniti"]),
            ("しゅう", &["shuu", "shu", "syuu", "syu"]),
            ("サトウ", &["satou", "sato", "satoh"]),
            ("ハットリ", &["hattori"]),
            ("ホッチ", &["hotchi", "hotti"]),
            ("フジツカ", &["fujitsuka", "huzituka"]),
            ("ナンバ", &["nanba", "namba"]),
            ("コーヒー", &["koohii", "kohi", "kohhii"]),
            ("ヂャ", &["ja", "dya"]),
            ("ティファニー", &["tifanii"]),
        ];
        for (kana, expected) in cases {
            let got = romaji(kana);
            for e in *expected {
                assert!(got.iter().any(|g| g == e), "{kana} → {got:?} lacks {e}");
            }
        }
        assert!(romaji("田中").is_empty());
    }

    #[test]
    fn era_math() {
        assert_eq!(era(date!(1990 - 05 - 12)), Some(("平成", 'h', 2)));
        assert_eq!(era(date!(1968 - 04 - 02)), Some(("昭和", 's', 43)));
        assert_eq!(era(date!(1926 - 12 - 24)), None);
        assert_eq!(era(date!(1926 - 12 - 25)), Some(("昭和", 's', 1)));
        assert_eq!(era(date!(1989 - 01 - 07)), Some(("昭和", 's', 64)));
        assert_eq!(era(date!(1989 - 01 - 08)), Some(("平成", 'h', 1)));
        assert_eq!(era(date!(2019 - 04 - 30)), Some(("平成", 'h', 31)));
        assert_eq!(era(date!(2019 - 05 - 01)), Some(("令和", 'r', 1)));
        assert_eq!(era(date!(2024 - 02 - 29)), Some(("令和", 'r', 6)));
        let reiwa = date_forms(date!(2019 - 05 - 01));
        for form in ["令和元年5月1日", "r1.5.1", "r010501", "010501", "20190501"] {
            assert!(reiwa.iter().any(|f| f == form), "{form} missing from {reiwa:?}");
        }
    }

    #[test]
    fn heisei_birth_date_in_every_form_is_refused() {
        let ctx = tanaka();
        for form in [
            "19900512",
            "900512",
            "0512",
            "512",
            "1990-05-12",
            "1990/05/12",
            "1990.05.12",
            "1990/5/12",
            "12051990",
            "05121990",
            "120590",
            "1990",
            "平成2年5月12日",
            "平成02年05月12日",
            "H2.5.12",
            "H02.05.12",
            "H020512",
            "h020512",
            "020512",
            "１９９００５１２",
            "Ｈ２．５．１２",
        ] {
            assert_found(&format!("umibe-no-kaze-{form}-fuyu"), &ctx, "birth date");
        }
        assert!(date_forms(date!(1990 - 05 - 12)).iter().all(|w| w.chars().count() >= 3));
        assert!(!context_words(&ctx).iter().any(|w| w == "90" || w == "12"));
    }

    #[test]
    fn showa_birth_date_is_refused() {
        let ctx = PersonalContext { birth_date: Some(date!(1968 - 04 - 02)), ..tanaka() };
        for form in [
            "昭和43年4月2日",
            "昭和43年04月02日",
            "S43.4.2",
            "s43.04.02",
            "S430402",
            "430402",
            "19680402",
            "1968/4/2",
            "402",
        ] {
            assert_found(&format!("umibe-no-kaze-{form}-fuyu"), &ctx, "birth date");
        }
    }

    #[test]
    fn employee_number_is_refused() {
        let ctx = tanaka();
        for password in ["umibe-E012345-fuyu", "umibe-012345-fuyu-no", "umibe-12345-fuyu-no-sora"] {
            assert_found(password, &ctx, "employee number");
        }
    }

    #[test]
    fn name_in_romaji_kana_and_kanji_is_refused() {
        let ctx = tanaka();
        for password in [
            "tanaka-umibe-fuyu",
            "Kenichi-umibe-fuyu",
            "kenichitanaka-umibe",
            "KENITI-umibe-fuyu",
            "タナカ-umibe-fuyu",
            "たなか-umibe-fuyu",
            "ケンイチ-umibe-fuyu",
            "田中-umibe-fuyu-no",
            "健一-umibe-fuyu-no",
        ] {
            assert_found(password, &ctx, "name");
        }
    }

    #[test]
    fn login_id_and_section_are_refused() {
        let ctx = PersonalContext { login_id: "kenta_ogawa7", ..tanaka() };
        assert_found("umibe-kenta_ogawa7-fuyu", &ctx, "login ID");
        assert_found("umibe-ogawa7-fuyu-sora", &ctx, "login ID");
        assert_found("umibe-税務課-fuyu-sora", &tanaka(), "section");
        let extra = check_with_extra_words(&StrengthPolicy::default(), "taxation-umibe-fuyu", &tanaka(), &["Taxation"]);
        assert!(extra.err().unwrap_or_default().iter().any(|r| r.en.contains("information about you")));
    }

    #[test]
    fn refusals_do_not_echo_the_secret() {
        let found = refusals("tanaka19900512", &tanaka());
        assert!(found.len() >= 2);
        for r in found {
            assert!(!r.ja.is_empty() && !r.en.is_empty());
            assert!(!r.en.contains("1990") && !r.en.contains("tanaka") && !r.ja.contains("田中"));
        }
    }

    #[test]
    fn strong_passphrases_are_accepted() {
        let ctx = tanaka();
        for password in ["correct-horse-battery-staple-tamago", "Umibe-no-kaze-2-fuyu-no-sora"] {
            assert_eq!(check(&StrengthPolicy::default(), password, &ctx), Ok(()), "{password}");
            assert!(u8::from(zxcvbn::zxcvbn(password, &[]).score()) >= 3);
        }
    }

    #[test]
    fn length_limits() {
        let short = refusals("Umibe-kaze", &tanaka());
        let too_short = short.iter().find(|r| r.code == "too_short");
        assert!(too_short.is_some_and(|r| r.ja.contains("12文字") && r.en.contains("12 characters")));
        let long = refusals(&"umibe-no-kaze ".repeat(20), &tanaka());
        assert_eq!(long.iter().map(|r| r.code).collect::<Vec<_>>(), ["too_long"]);
        assert!(refusals("", &tanaka()).iter().any(|r| r.code == "too_short"));
    }

    #[test]
    fn weak_passwords_get_feedback_in_both_languages() {
        let weak = refusals("password1234", &tanaka());
        let refusal = weak.iter().find(|r| r.code == "too_weak");
        assert!(refusal
            .is_some_and(|r| r.ja.starts_with("推測されやすいパスワードです。") && r.ja.contains("よく使われている")));
        assert!(refusal.is_some_and(|r| r.en.contains("common password")));
        let strict = StrengthPolicy { min_length: 12, min_score: 9 };
        let refused = check(&strict, "correct-horse-battery-staple-tamago", &tanaka());
        assert!(refused.err().unwrap_or_default().iter().all(|r| r.code == "too_weak" && !r.ja.is_empty()));
    }

    #[test]
    fn unrelated_short_context_is_not_refused_as_substring() {
        let ctx = PersonalContext {
            login_id: "ito",
            employee_number: "07",
            family_name: "伊藤",
            given_name: "誠",
            family_name_kana: "イトウ",
            given_name_kana: "マコト",
            birth_date: None,
            org_unit_name: None,
            org_unit_code: None,
            org_unit_name_en: None,
        };
        assert!(personal("kito-07-umibe-fuyu-no-sora", &ctx).is_empty());
        assert_found("makoto-umibe-fuyu-no-sora", &ctx, "name");
    }

    #[test]
    fn names_in_leetspeak_or_reversed_are_refused() {
        let ctx = tanaka();
        assert_found("K3n1ch1-no-fuyu-yasumi-ni", &ctx, "name");
        assert_found("t4n4k4-ga-umibe-de-hashiru", &ctx, "name");
        assert_found("ihcinek-no-fuyu-yasumi-ni", &ctx, "name");
        assert_found("akanat-ga-umibe-de-hashiru", &ctx, "name");
    }

    #[test]
    fn the_section_in_romaji_or_english_is_refused() {
        let ctx = tanaka();
        assert_found("zeimu-no-fuyu-yasumi-ni-kaze", &ctx, "section");
        assert_found("Z31MU-no-fuyu-yasumi-ni-kaze", &ctx, "section");
        assert_found("taxation-no-fuyu-yasumi-kaze", &ctx, "section");
        assert!(personal("division-of-the-winter-moon-river", &ctx).is_empty(), "generic words are not personal");
    }

    #[test]
    fn half_width_katakana_is_normalised_before_the_check() {
        assert_found("ｹﾝｲﾁ-no-fuyu-yasumi-ni-kaze", &tanaka(), "name");
        assert_found("ﾀﾅｶ-no-fuyu-yasumi-ni-kaze", &tanaka(), "name");
    }
}
