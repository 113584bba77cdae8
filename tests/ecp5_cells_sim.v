// Behavioural models of the ECP5 primitives hdl/fpga/ecp5.py instantiates, for Icarus.
//
// Yosys 0.70's techlibs/lattice/cells_sim_ecp5.v declares DP16KD as an empty black box and has no
// MULT18X18D at all, and Lattice's own models are not redistributable, so these are written from the
// ECP5 memory and sysDSP usage guides (TN1264, TN1267) and Yosys's mapping files. They model only the
// configurations hdl/fpga/ecp5.py uses and stop the simulation on any other, rather than guess.
//
// DP16KD: both ports the same width (1, 2, 4, 9, 18, or 36 = the PDPW16KD mode), port A writes and
// port B reads. Address pins carry a bit address: the word address of a port 2**s bits wide (9 counts
// as 8) is AD[13:s]. RSTB is modelled as a synchronous reset (RESETMODE "SYNC"); with "ASYNC" it
// must stay low. At x18 the write port's AD[1:0] are byte enables, at x36 ADA[3:0] are; at x36
// data bits 0-17 are on DIA/DOA and 18-35 on DIB/DOB. The read data latch loads on CLKB when CEB is
// high (RSTB clears it, synchronously); with REGMODE_B = "OUTREG" an output register loads it on the
// next CLKB edge when OCEB is high. A read of the word written on the same edge returns the old word.
//
// MULT18X18D: P = A * B (each operand signed when SIGNEDx is high), with the input, pipeline and
// output registers each either bypassed ("NONE") or clocked by CLK0, enabled by CE0 and cleared by
// RST0 (RESETMODE "SYNC"). The C input, the shift chains and the cascade outputs are not modelled.
`default_nettype none

module DP16KD(
  input DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0,
  input ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0,
  input CEA, OCEA, CLKA, WEA, RSTA,
  input CSA2, CSA1, CSA0,
  output DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0,
  input DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0,
  input ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0,
  input CEB, OCEB, CLKB, WEB, RSTB,
  input CSB2, CSB1, CSB0,
  output DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter CLKAMUX = "CLKA";
  parameter CLKBMUX = "CLKB";
  parameter GSR = "ENABLED";

  localparam W = DATA_WIDTH_B;
  localparam PDP = (W == 36);
  localparam SHIFT = W == 36 ? 5 : W == 18 ? 4 : W == 9 ? 3 : W == 4 ? 2 : W == 2 ? 1 : 0;
  localparam WORDS = 16384 >> SHIFT;

  wire [13:0] ada = {ADA13, ADA12, ADA11, ADA10, ADA9, ADA8, ADA7, ADA6, ADA5, ADA4, ADA3, ADA2, ADA1, ADA0};
  wire [13:0] adb = {ADB13, ADB12, ADB11, ADB10, ADB9, ADB8, ADB7, ADB6, ADB5, ADB4, ADB3, ADB2, ADB1, ADB0};
  wire [17:0] dia = {DIA17, DIA16, DIA15, DIA14, DIA13, DIA12, DIA11, DIA10, DIA9, DIA8, DIA7, DIA6, DIA5, DIA4, DIA3, DIA2, DIA1, DIA0};
  wire [17:0] dib = {DIB17, DIB16, DIB15, DIB14, DIB13, DIB12, DIB11, DIB10, DIB9, DIB8, DIB7, DIB6, DIB5, DIB4, DIB3, DIB2, DIB1, DIB0};
  wire [35:0] wdata = PDP ? {dib, dia} : {18'b0, dia};
  // 9-bit lanes written: byte enables at x18 and x36, the whole word otherwise
  wire [3:0] lanes = W == 36 ? ada[3:0] : W == 18 ? {2'b00, ada[1:0]} : 4'b1111;
  wire [35:0] wmask = {{9{lanes[3]}}, {9{lanes[2]}}, {9{lanes[1]}}, {9{lanes[0]}}} & ((36'd1 << W) - 36'd1);

  reg [35:0] mem [0:WORDS-1];
  reg [35:0] latch_b, outreg_b;

  initial begin
    if (DATA_WIDTH_A != DATA_WIDTH_B || (W != 1 && W != 2 && W != 4 && W != 9 && W != 18 && W != 36)) begin
      $display("DP16KD model: unsupported widths A=%0d B=%0d", DATA_WIDTH_A, DATA_WIDTH_B); $fatal;
    end
    if ((REGMODE_B != "NOREG" && REGMODE_B != "OUTREG") || (PDP && REGMODE_A != REGMODE_B)) begin
      $display("DP16KD model: unsupported REGMODE_A=%s REGMODE_B=%s", REGMODE_A, REGMODE_B); $fatal;
    end
    if ((RESETMODE != "SYNC" && RESETMODE != "ASYNC") || CSDECODE_A != "0b000" || CSDECODE_B != "0b000" ||
        CLKAMUX != "CLKA" || CLKBMUX != "CLKB") begin
      $display("DP16KD model: unsupported configuration"); $fatal;
    end
  end

  always @(posedge CLKA) begin
    if ({CSA2, CSA1, CSA0} != 3'b000 || RSTA) begin
      $display("DP16KD model: chip selects and port A reset are not modelled"); $fatal;
    end
    if (CEA && WEA)
      mem[ada >> SHIFT] <= (mem[ada >> SHIFT] & ~wmask) | (wdata & wmask);
  end

  always @(posedge CLKB) begin
    if ({CSB2, CSB1, CSB0} != 3'b000 || (CEB && WEB) || (RESETMODE != "SYNC" && RSTB)) begin
      $display("DP16KD model: chip selects, port B writes and asynchronous resets are not modelled"); $fatal;
    end
    if (RSTB)
      latch_b <= 36'b0;
    else if (CEB)
      latch_b <= mem[adb >> SHIFT] & ((36'd1 << W) - 36'd1);
    if (RSTB)
      outreg_b <= 36'b0;
    else if (OCEB)
      outreg_b <= latch_b;
  end

  wire [35:0] dout = REGMODE_B == "OUTREG" ? outreg_b : latch_b;
  // Port A's own read path is not modelled: at x36 DOA carries the low half of the read port.
  wire [17:0] doa = PDP ? dout[17:0] : 18'bx;
  wire [17:0] dob = PDP ? dout[35:18] : dout[17:0];
  assign {DOA17, DOA16, DOA15, DOA14, DOA13, DOA12, DOA11, DOA10, DOA9, DOA8, DOA7, DOA6, DOA5, DOA4, DOA3, DOA2, DOA1, DOA0} = doa;
  assign {DOB17, DOB16, DOB15, DOB14, DOB13, DOB12, DOB11, DOB10, DOB9, DOB8, DOB7, DOB6, DOB5, DOB4, DOB3, DOB2, DOB1, DOB0} = dob;
endmodule

module MULT18X18D(
  input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
  input B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
  input C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
  input CE0, CE1, CE2, CE3, CLK0, CLK1, CLK2, CLK3, RST0, RST1, RST2, RST3,
  output P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
  output P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0
);
  parameter REG_INPUTA_CLK = "NONE";
  parameter REG_INPUTA_CE = "CE0";
  parameter REG_INPUTA_RST = "RST0";
  parameter REG_INPUTB_CLK = "NONE";
  parameter REG_INPUTB_CE = "CE0";
  parameter REG_INPUTB_RST = "RST0";
  parameter REG_INPUTC_CLK = "NONE";
  parameter REG_PIPELINE_CLK = "NONE";
  parameter REG_PIPELINE_CE = "CE0";
  parameter REG_PIPELINE_RST = "RST0";
  parameter REG_OUTPUT_CLK = "NONE";
  parameter REG_OUTPUT_CE = "CE0";
  parameter REG_OUTPUT_RST = "RST0";
  parameter CAS_MATCH_REG = "FALSE";
  parameter MULT_BYPASS = "DISABLED";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter RESETMODE = "SYNC";
  parameter GSR = "ENABLED";

  initial begin
    if ((REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0") ||
        (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0") ||
        (REG_PIPELINE_CLK != "NONE" && REG_PIPELINE_CLK != "CLK0") ||
        (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0") ||
        REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_PIPELINE_CE != "CE0" || REG_OUTPUT_CE != "CE0" ||
        REG_INPUTA_RST != "RST0" || REG_INPUTB_RST != "RST0" || REG_PIPELINE_RST != "RST0" ||
        REG_OUTPUT_RST != "RST0" || REG_INPUTC_CLK != "NONE" || MULT_BYPASS != "DISABLED" ||
        RESETMODE != "SYNC") begin
      $display("MULT18X18D model: unsupported configuration"); $fatal;
    end
  end

  wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
  wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
  reg [17:0] a_reg, b_reg;
  reg [35:0] pipe_reg, out_reg;
  wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_reg : a;
  wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_reg : b;
  wire signed [36:0] a_ext = SIGNEDA ? {{19{a_in[17]}}, a_in} : {19'b0, a_in};
  wire signed [36:0] b_ext = SIGNEDB ? {{19{b_in[17]}}, b_in} : {19'b0, b_in};
  wire [36:0] product_full = a_ext * b_ext;
  wire [35:0] product = product_full[35:0];
  wire [35:0] pipe_out = REG_PIPELINE_CLK == "CLK0" ? pipe_reg : product;
  wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? out_reg : pipe_out;

  always @(posedge CLK0) begin
    if (RST0) begin
      a_reg <= 18'b0; b_reg <= 18'b0; pipe_reg <= 36'b0; out_reg <= 36'b0;
    end else if (CE0) begin
      a_reg <= a; b_reg <= b; pipe_reg <= product; out_reg <= pipe_out;
    end
  end

  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
          P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule

// TRELLIS_FF, the slice flip-flop (`replica`, and Yosys's own mapping of registers): as in Yosys's
// techlibs/lattice/common_sim.vh.
module TRELLIS_FF(input CLK, LSR, CE, DI, M, output reg Q);
  parameter GSR = "ENABLED";
  parameter [127:0] CEMUX = "1";
  parameter CLKMUX = "CLK";
  parameter LSRMUX = "LSR";
  parameter SRMODE = "LSR_OVER_CE";
  parameter REGSET = "RESET";
  parameter [127:0] LSRMODE = "LSR";

  wire muxce = (CEMUX == "1") ? 1'b1 : (CEMUX == "0") ? 1'b0 : (CEMUX == "INV") ? ~CE : CE;
  wire muxlsr = (LSRMUX == "INV") ? ~LSR : LSR;
  wire muxclk = (CLKMUX == "INV") ? ~CLK : CLK;
  wire srval = (LSRMODE == "PRLD") ? M : (REGSET == "SET");

  initial Q = srval;

  generate
    if (SRMODE == "ASYNC") begin
      always @(posedge muxclk, posedge muxlsr)
        if (muxlsr) Q <= srval; else if (muxce) Q <= DI;
    end else begin
      always @(posedge muxclk)
        if (muxlsr) Q <= srval; else if (muxce) Q <= DI;
    end
  endgenerate
endmodule
