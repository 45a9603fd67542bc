package g711

// Straightforward bit-twiddling reference implementations, used only to check
// the production tables.

// Sun Microsystems g711.c, revision of 30 December 1994 (B. Lindberg,
// "updated to correctly convert unquantized 16 bit values"), as distributed
// with SoX and CPython's audioop.

var (
	segAEnd = []int{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF}
	segUEnd = []int{0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF}
)

const (
	refBias = 0x84
	refClip = 8159
)

func search(val int, table []int) int {
	for i, end := range table {
		if val <= end {
			return i
		}
	}
	return len(table)
}

func linear2alaw(pcmVal int) byte {
	var mask int
	pcmVal >>= 3
	if pcmVal >= 0 {
		mask = 0xD5 // sign (7th) bit = 1
	} else {
		mask = 0x55 // sign bit = 0
		pcmVal = -pcmVal - 1
	}
	seg := search(pcmVal, segAEnd)
	if seg >= 8 { // out of range, return maximum value
		return byte(0x7F ^ mask)
	}
	aval := seg << 4
	if seg < 2 {
		aval |= (pcmVal >> 1) & 0xF
	} else {
		aval |= (pcmVal >> seg) & 0xF
	}
	return byte(aval ^ mask)
}

func alaw2linear(aVal byte) int {
	aVal ^= 0x55
	t := int(aVal&0xF) << 4
	seg := int(aVal&0x70) >> 4
	switch seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if aVal&0x80 != 0 {
		return t
	}
	return -t
}

func linear2ulaw(pcmVal int) byte {
	var mask int
	pcmVal >>= 2
	if pcmVal < 0 {
		pcmVal = -pcmVal
		mask = 0x7F
	} else {
		mask = 0xFF
	}
	if pcmVal > refClip {
		pcmVal = refClip
	}
	pcmVal += refBias >> 2
	seg := search(pcmVal, segUEnd)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	uval := seg<<4 | (pcmVal>>(seg+1))&0xF
	return byte(uval ^ mask)
}

func ulaw2linear(uVal byte) int {
	uVal = ^uVal
	t := int(uVal&0xF)<<3 + refBias
	t <<= (uVal & 0x70) >> 4
	if uVal&0x80 != 0 {
		return refBias - t
	}
	return t - refBias
}

// ITU-T G.191 Software Tool Library, g711.c (alaw_compress, alaw_expand,
// ulaw_compress, ulaw_expand), one sample at a time.

func g191ALawCompress(lin int16) byte {
	var ix int
	if lin < 0 {
		ix = int(^lin) >> 4 // one's complement for negative values
	} else {
		ix = int(lin) >> 4
	}
	if ix > 15 {
		iexp := 1
		for ix > 16+15 {
			ix >>= 1
			iexp++
		}
		ix -= 16
		ix += iexp << 4
	}
	if lin >= 0 {
		ix |= 0x80
	}
	return byte(ix ^ 0x55)
}

func g191ALawExpand(log byte) int16 {
	ix := int(log^0x55) & 0x7F
	iexp := ix >> 4
	mant := ix & 0xF
	if iexp > 0 {
		mant += 16
	}
	mant = mant<<4 + 8
	if iexp > 1 {
		mant <<= iexp - 1
	}
	if log > 127 {
		return int16(mant)
	}
	return int16(-mant)
}

func g191ULawCompress(lin int16) byte {
	var absno int
	if lin < 0 {
		absno = int(^lin)>>2 + 33
	} else {
		absno = int(lin)>>2 + 33
	}
	if absno > 0x1FFF {
		absno = 0x1FFF
	}
	i := absno >> 6
	segno := 1
	for i != 0 {
		segno++
		i >>= 1
	}
	high := 8 - segno
	low := 0xF - (absno>>segno)&0xF
	out := high<<4 | low
	if lin >= 0 {
		out |= 0x80
	}
	return byte(out)
}

func g191ULawExpand(log byte) int16 {
	sign := 1
	if log < 0x80 {
		sign = -1
	}
	mantissa := int(^log)
	exponent := (mantissa >> 4) & 7
	segment := exponent + 1
	mantissa &= 0xF
	step := 4 << segment
	return int16(sign * (0x80<<exponent + step*mantissa + step/2 - 4*33))
}
