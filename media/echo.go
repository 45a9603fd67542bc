package media

// Echo returns a consumer that plays every inbound frame back out through
// the whole path (jitter buffer, conversion to format and back, pacer): the
// echo test line. Start the stream with it:
//
//	s.Start(neg, media.Echo(s, media.FormatULaw8k))
func Echo(s *Stream, format Format) Consumer {
	return Consumer{
		Format: format,
		Sink:   func(f Frame) { _ = s.Play(f.Audio) },
	}
}
