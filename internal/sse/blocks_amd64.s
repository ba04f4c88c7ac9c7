//go:build amd64 && !purego

#include "textflag.h"

// ANDBYTE keeps in Y1 the positions whose byte at off is the one in y.
#define ANDBYTE(off, y) \
	VMOVDQU  off(SI)(R11*1), Y3 \
	VPCMPEQB y, Y3, Y3 \
	VPAND    Y3, Y1, Y1

// EVENTMARKS compares the 32 positions from off(SI)(R11*1) and the five
// bytes after each, leaving in Y2 the LFs followed by a blank line (a
// block's end) and in Y1 the LFs followed by a data field ("data:", or
// "data" and LF); Y0 holds the LFs, and Y7 the bytes after them.
#define EVENTMARKS(off) \
	VMOVDQU  off(SI)(R11*1), Y0 \
	VMOVDQU  off+1(SI)(R11*1), Y7 \
	VPCMPEQB Y15, Y0, Y0 \
	VPCMPEQB Y15, Y7, Y2 \
	VPAND    Y0, Y2, Y2 \
	VPCMPEQB Y14, Y7, Y1 \
	VPAND    Y0, Y1, Y1 \
	ANDBYTE(off+2, Y13) \
	ANDBYTE(off+3, Y12) \
	ANDBYTE(off+4, Y13) \
	VMOVDQU  off+5(SI)(R11*1), Y3 \
	VPCMPEQB Y11, Y3, Y4 \
	VPCMPEQB Y15, Y3, Y3 \
	VPOR     Y4, Y3, Y3 \
	VPAND    Y3, Y1, Y1

// FRAMEMARKS is EVENTMARKS, and leaves in Y5 the LFs followed by a comment
// and adds to Y10 those followed by an 'r' (a retry field, maybe).
#define FRAMEMARKS(off) \
	EVENTMARKS(off) \
	VPCMPEQB Y11, Y7, Y5 \
	VPAND    Y0, Y5, Y5 \
	VPCMPEQB Y9, Y7, Y6 \
	VPAND    Y0, Y6, Y6 \
	VPOR     Y6, Y10, Y10

// EVENTS adds to R9 the ends in AX of blocks with a data field: with the
// ends as zeros in a word of ones, adding the data marks (BX) and the
// pending block's (R8) carries from each mark to the next end, which then
// reads 1; the carry out is the block pending after the word. It keeps in
// R10 the last end's offset. Q or L: the words' width.
#define EVENTS(NOT, BT, ADC, AND, POPCNT) \
	MOVQ    AX, R14 \
	NOT     R14 \
	BT      $0, R8 \
	ADC     BX, R14 \
	SETCS   R8 \
	AND     AX, R14 \
	POPCNT  R14, R14 \
	ADDQ    R14, R9 \
	BSRQ    AX, CX \
	LEAQ    (R11)(CX*1), R14 \
	CMOVQNE R14, R10

// COMMENTS keeps in R13 the comments (DI) up to the last end (AX, its bit
// in CX from EVENTS) and in R15 all of them.
#define COMMENTS \
	MOVQ    $2, BX \
	SHLQ    CX, BX \
	DECQ    BX \
	ANDQ    DI, BX \
	POPCNTQ BX, BX \
	ADDQ    R15, BX \
	TESTQ   AX, AX \
	CMOVQNE BX, R13 \
	POPCNTQ DI, DI \
	ADDQ    DI, R15

// HIGHHALF puts the mask of y in the high half of r, the second 32
// positions of a 64-position step.
#define HIGHHALF(y, r) \
	VPMOVMSKB y, CX \
	SHLQ      $32, CX \
	ORQ       CX, r

#define BROADCAST(c, y) \
	MOVL $c, AX \
	MOVQ AX, X0 \
	VPBROADCASTB X0, y

#define SETUP \
	MOVQ b_base+0(FP), SI \
	MOVQ b_len+8(FP), DX \
	MOVQ hasData+24(FP), R8 \
	XORQ R9, R9 \
	MOVQ $-2, R10 \
	XORQ R11, R11 \
	XORQ R13, R13 \
	XORQ R15, R15 \
	BROADCAST(0x0a, Y15) \
	BROADCAST(0x64, Y14) \
	BROADCAST(0x61, Y13) \
	BROADCAST(0x74, Y12) \
	BROADCAST(0x3a, Y11) \
	BROADCAST(0x72, Y9) \
	VPXOR Y10, Y10, Y10 \
	MOVQ DX, R12 \
	SUBQ $69, R12 \
	SUBQ $37, DX

// Registers: SI b, R11 the offset, DX and R12 the last offsets of 32 and
// 64 positions (each needs the five bytes after it), R8 the pending
// block's data mark, R9 the events, R10 the last end's offset (-2 for
// none), R13 the comments up to it, R15 all comments.

// func countEventsAVX2(b []byte, hasData uint64) (events int64, done int)
TEXT ·countEventsAVX2(SB), NOSPLIT, $0-48
	SETUP
	JL end

loop64:
	CMPQ R11, R12
	JG   loop32
	EVENTMARKS(0)
	VPMOVMSKB Y2, AX
	VPMOVMSKB Y1, BX
	EVENTMARKS(32)
	HIGHHALF(Y2, AX)
	HIGHHALF(Y1, BX)
	EVENTS(NOTQ, BTQ, ADCQ, ANDQ, POPCNTQ)
	ADDQ $64, R11
	JMP  loop64

loop32:
	CMPQ R11, DX
	JG   end
	EVENTMARKS(0)
	VPMOVMSKB Y2, AX
	VPMOVMSKB Y1, BX
	EVENTS(NOTL, BTL, ADCL, ANDL, POPCNTL)
	ADDQ $32, R11
	JMP  loop32

end:
	VZEROUPPER
	MOVQ R9, events+32(FP)
	ADDQ $2, R10 // past the blank line's LF
	MOVQ R10, done+40(FP)
	RET

// func countFramesAVX2(b []byte, hasData uint64) (events, comments int64, done int, retry bool)
TEXT ·countFramesAVX2(SB), NOSPLIT, $0-57
	SETUP
	JL end

loop64:
	CMPQ R11, R12
	JG   loop32
	FRAMEMARKS(0)
	VPMOVMSKB Y2, AX
	VPMOVMSKB Y1, BX
	VPMOVMSKB Y5, DI
	FRAMEMARKS(32)
	HIGHHALF(Y2, AX)
	HIGHHALF(Y1, BX)
	HIGHHALF(Y5, DI)
	EVENTS(NOTQ, BTQ, ADCQ, ANDQ, POPCNTQ)
	COMMENTS
	ADDQ $64, R11
	JMP  loop64

loop32:
	CMPQ R11, DX
	JG   end
	FRAMEMARKS(0)
	VPMOVMSKB Y2, AX
	VPMOVMSKB Y1, BX
	VPMOVMSKB Y5, DI
	EVENTS(NOTL, BTL, ADCL, ANDL, POPCNTL)
	COMMENTS
	ADDQ $32, R11
	JMP  loop32

end:
	VPTEST Y10, Y10
	SETNE  retry+56(FP)
	VZEROUPPER
	MOVQ R9, events+32(FP)
	MOVQ R13, comments+40(FP)
	ADDQ $2, R10
	MOVQ R10, done+48(FP)
	RET
