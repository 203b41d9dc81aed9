package agentconnectemu

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// HS256 JWTs with the standard library (agentconnect.md §2.2): header
// {"alg":"HS256","typ":"JWT"}, claims sub, exp, type="access", jti.

type claims struct {
	Sub  string `json:"sub"`
	Exp  int64  `json:"exp"`
	Type string `json:"type"`
	JTI  string `json:"jti"`
}

var (
	errTokenMalformed = errors.New("token is not a JWT")
	errTokenSignature = errors.New("token signature does not verify")
	errTokenExpired   = errors.New("token has expired")
	errTokenClaims    = errors.New("token claims are not an access token")
)

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func signJWT(secret []byte, c claims) string {
	payload, _ := json.Marshal(c) // plain struct: cannot fail
	signing := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac(secret, signing))
}

func mac(secret []byte, signing string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(signing))
	return h.Sum(nil)
}

// parseJWT verifies token and returns its claims. As python-jose does,
// a token is expired once exp < now in whole seconds.
func parseJWT(secret []byte, token string, now time.Time) (claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return claims{}, errTokenMalformed
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	rawPayload, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return claims{}, errTokenMalformed
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(rawHeader, &h) != nil || h.Alg != "HS256" {
		return claims{}, errTokenMalformed
	}
	if !hmac.Equal(sig, mac(secret, parts[0]+"."+parts[1])) {
		return claims{}, errTokenSignature
	}
	var c claims
	if json.Unmarshal(rawPayload, &c) != nil {
		return claims{}, errTokenMalformed
	}
	if c.Sub == "" || c.Type != "access" || c.Exp == 0 {
		return claims{}, errTokenClaims
	}
	if c.Exp < now.Unix() {
		return claims{}, errTokenExpired
	}
	return c, nil
}
