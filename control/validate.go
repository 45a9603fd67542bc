package control

import (
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/cxco/gateway/store"
)

// NormalizeE164 accepts "+27211234567" (spaces, dashes, dots and brackets ignored) and
// returns it in E.164 form, or false.
func NormalizeE164(s string) (string, bool) { return store.NormalizeE164(s) }

// iso3166 is every ISO 3166-1 alpha-2 country code.
const iso3166 = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
	"CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
	"GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
	"KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ " +
	"NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ " +
	"UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"

var countries = strings.Fields(iso3166)

// countryCode validates an ISO 3166-1 alpha-2 code (case-insensitive) and returns it upper-case.
func countryCode(field, s string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(s))
	if !slices.Contains(countries, c) {
		return "", invalid("%s: %q is not an ISO 3166-1 alpha-2 country code", field, s)
	}
	return c, nil
}

// Languages the voice-AI provider speaks.
var languages = strings.Fields("en ja zh de hi fr ko pt pt-br it es id nl tr pl sv bg ro ar cs el fi ms da ta uk ru hu hr sk no vi tl")

func language(field, s string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	if !slices.Contains(languages, l) {
		return "", invalid("%s: %q is not a supported language (one of: %s)", field, s, strings.Join(languages, ", "))
	}
	return l, nil
}

func oneOf(field, s string, allowed ...string) error {
	if !slices.Contains(allowed, s) {
		return invalid("%s: must be one of %s (got %q)", field, strings.Join(allowed, ", "), s)
	}
	return nil
}

func email(field, s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@'):], ".") || len(s) > 254 {
		return "", invalid("%s: %q is not a valid email address", field, s)
	}
	return s, nil
}

// dateRange reads start_date and end_date (YYYY-MM-DD, UTC days). Missing dates default
// to the first day of the current month and today, unless required.
func dateRange(q map[string][]string, now time.Time, required bool) (time.Time, time.Time, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	parse := func(k string, def time.Time) (time.Time, error) {
		v := get(k)
		if v == "" {
			if required {
				return time.Time{}, invalid("%s: query parameter required (YYYY-MM-DD)", k)
			}
			return def, nil
		}
		t, err := time.Parse(store.DayFormat, v)
		if err != nil {
			return time.Time{}, invalid("%s: %q is not a date in the form YYYY-MM-DD", k, v)
		}
		return t, nil
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	start, err := parse("start_date", time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC))
	if err != nil {
		return start, start, err
	}
	end, err := parse("end_date", today)
	if err != nil {
		return start, end, err
	}
	if get("start_date") != "" && get("end_date") == "" && start.After(end) {
		end = start
	}
	if get("end_date") != "" && get("start_date") == "" && start.After(end) {
		start = time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	if start.After(end) {
		return start, end, invalid("start_date (%s) is after end_date (%s)", start.Format(store.DayFormat), end.Format(store.DayFormat))
	}
	if days := int(end.Sub(start).Hours()/24) + 1; days > 366 {
		return start, end, invalid("end_date: the range from start_date %s to end_date %s spans %d days; at most 366 are allowed",
			start.Format(store.DayFormat), end.Format(store.DayFormat), days)
	}
	return start, end, nil
}
