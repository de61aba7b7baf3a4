package persistence

// IsLocalFeed reports whether f is the feed of a store that lives in one
// process (it never calls its handler: every append is this process's
// own), so its user must not wait for notices.
func IsLocalFeed(f Feed) bool {
	_, ok := f.(nopFeed)
	return ok
}
